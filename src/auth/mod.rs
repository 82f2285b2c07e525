//! Access-token validation and the scopes tools need, shared by `serve` and `check-token`.
//!
//! Both commands run the same checks in the same order through [`validate::evaluate`], so they can
//! never disagree about a token: `serve` stops at the first failure and turns it into a challenge,
//! `check-token` runs every check and explains each one.

pub mod challenge;
pub mod jwks;
pub mod keys;
pub mod time;
pub mod tool_scopes;
pub mod validate;
pub mod verdicts;
