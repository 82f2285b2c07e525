//! The integration tests: one binary (faster to link on small machines), one module per area.
//! Everything runs on 127.0.0.1 with temp dirs; no test reads the developer's config or keyring.

mod adversarial;
mod call;
mod check_token;
mod child_sessions;
mod completions;
mod dev_auth;
mod direct_path;
mod examples;
mod gateway;
mod hygiene;
mod library;
mod login;
mod metrics;
mod oauth_client;
mod pass_through;
mod policies;
mod properties;
mod proxy;
mod response_stream;
mod serve_binary;
mod serve_router;
mod sessions;
mod sleeping_sessions;
mod soak;
mod util;
mod verdicts;
