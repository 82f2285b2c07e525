//! A JSON-RPC message as it was written, and the gateway's changes to it, made in its text.
//!
//! The gateway changes at most two things in a message it forwards: the request id (a stateless
//! gateway puts its own on requests, and the client's back on their answers) and the caller under
//! `params._meta["scalekit-mcp/caller"]`. Both are spliced into the text as it came: the rest of
//! the message (member order, numbers as spelled, whitespace) passes unchanged, and is read only
//! as far as finding where the changes go. The one `_meta` object is written anew, without any
//! caller the client put there.
//!
//! A message that names a changed member twice (two `"id"`s, two `"params"`, two `"_meta"`) is
//! rebuilt instead, keeping the last of each as JSON readers do, so that no reader of what the
//! gateway sends can see a value the gateway did not choose.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{CALLER_META_KEY, caller_meta};
use crate::auth::validate::Caller;

/// A JSON object's members in the order written, each value left as the text it was.
pub(super) struct Message<'a> {
    text: &'a [u8],
    members: Vec<(Name<'a>, &'a RawValue)>,
}

/// Why a message could not be changed in place.
enum Unspliced {
    /// `params` or `params._meta` is not an object: the message cannot carry the caller.
    NotObjects,
    /// A member to change is repeated, or its place was not found: rebuild the message.
    Rebuild,
}

impl<'a> Message<'a> {
    /// The members of the JSON object in `text`; `None` when `text` is not one.
    pub fn parse(text: &'a [u8]) -> Option<Self> {
        let Members(members) = serde_json::from_slice(text).ok()?;
        Some(Self { text, members })
    }

    /// The value of the member `name`: the last one, if it is repeated, as JSON readers keep.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(member, _)| member.0 == name)
            .map(|(_, value)| *value)
    }

    /// The member `name`'s value, unless it is repeated (`Err`).
    fn only(&self, name: &str) -> Result<Option<&'a RawValue>, Unspliced> {
        let mut named = self.members.iter().filter(|(member, _)| member.0 == name);
        match (named.next(), named.next()) {
            (first, None) => Ok(first.map(|(_, value)| *value)),
            _ => Err(Unspliced::Rebuild),
        }
    }

    /// The `method`, if it is a string.
    pub fn method(&self) -> Option<String> {
        serde_json::from_str(self.get("method")?.get()).ok()
    }

    /// This message with `_meta["scalekit-mcp/caller"]` of its params set to `caller` (removed
    /// without one: a client's own value never passes), and its id replaced by `id` when given.
    /// `None` when its params or their `_meta` are not objects.
    pub fn with_caller(&self, id: Option<u64>, caller: Option<&Caller>) -> Option<Bytes> {
        match self.spliced_with_caller(id, caller) {
            Ok(spliced) => Some(spliced),
            Err(Unspliced::NotObjects) => None,
            Err(Unspliced::Rebuild) => self.rebuilt_with_caller(id, caller),
        }
    }

    /// This message (an answer) with its id replaced by `id`.
    pub fn with_id(&self, id: &RawValue) -> Option<Bytes> {
        let spliced = self
            .only("id")
            .ok()
            .flatten()
            .and_then(|ours| self.span(ours))
            .map(|span| splice(self.text, vec![(span, id.get().as_bytes().to_vec())]));
        spliced.or_else(|| {
            let mut members = self.last_of_each();
            members.insert("id", id);
            serde_json::to_vec(&members).ok().map(Bytes::from)
        })
    }

    /// This message without the member `name` of its params, or `None` when its params name no
    /// such member (the message is then sent as it is). Rare, so rebuilt rather than spliced.
    pub fn without_param(&self, name: &str) -> Option<Vec<u8>> {
        let params_text = self.get("params")?.get();
        // Most messages show at once that they cannot name it: without the name's letters, and
        // without an escape (`"\u0074ask"` is `task` too).
        if !params_text.contains(name) && !params_text.contains('\\') {
            return None;
        }
        let params = Message::parse(params_text.as_bytes())?;
        params.get(name)?;
        let mut kept = params.last_of_each();
        kept.remove(name);
        let kept = raw(&kept)?;
        let mut members = self.last_of_each();
        members.insert("params", &kept);
        serde_json::to_vec(&members).ok()
    }

    fn spliced_with_caller(
        &self,
        id: Option<u64>,
        caller: Option<&Caller>,
    ) -> Result<Bytes, Unspliced> {
        let mut edits = Vec::with_capacity(2);
        if let Some(id) = id {
            let ours = self.only("id")?.ok_or(Unspliced::Rebuild)?;
            edits.push((self.located(ours)?, id.to_string().into_bytes()));
        }
        edits.push(self.caller_edit(caller)?);
        edits.sort_by_key(|(span, _)| span.start);
        Ok(splice(self.text, edits))
    }

    /// Where the caller goes, and the text that goes there: `_meta` written anew in place of the
    /// client's, or inserted first in `params`, or `params` added at the end of the message.
    fn caller_edit(&self, caller: Option<&Caller>) -> Result<(Range<usize>, Vec<u8>), Unspliced> {
        let Some(params_text) = self.only("params")? else {
            let end = self.text.iter().rposition(|byte| *byte == b'}');
            let end = end.ok_or(Unspliced::Rebuild)?;
            let mut text = Vec::with_capacity(160);
            if !self.members.is_empty() {
                text.push(b',');
            }
            text.extend_from_slice(br#""params":{"_meta":"#);
            write_meta(&mut text, caller, &[]);
            text.push(b'}');
            return Ok((end..end, text));
        };
        let params = Message::parse(params_text.get().as_bytes()).ok_or(Unspliced::NotObjects)?;
        match params.only("_meta")? {
            Some(meta_text) => {
                let meta =
                    Message::parse(meta_text.get().as_bytes()).ok_or(Unspliced::NotObjects)?;
                let mut text = Vec::with_capacity(meta_text.get().len() + 128);
                write_meta(&mut text, caller, &meta.members);
                Ok((self.located(meta_text)?, text))
            }
            None => {
                let opening = self.located(params_text)?.start;
                if self.text.get(opening) != Some(&b'{') {
                    return Err(Unspliced::Rebuild);
                }
                let mut text = Vec::with_capacity(160);
                text.extend_from_slice(br#""_meta":"#);
                write_meta(&mut text, caller, &[]);
                if !params.members.is_empty() {
                    text.push(b',');
                }
                Ok((opening + 1..opening + 1, text))
            }
        }
    }

    /// Where `value` (read from this message's text, at any depth) lies in that text.
    fn span(&self, value: &RawValue) -> Option<Range<usize>> {
        let start = (value.get().as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        let end = start + value.get().len();
        (end <= self.text.len()).then_some(start..end)
    }

    fn located(&self, value: &RawValue) -> Result<Range<usize>, Unspliced> {
        self.span(value).ok_or(Unspliced::Rebuild)
    }

    /// The message as a sorted map, the last of each repeated member kept.
    fn last_of_each(&self) -> BTreeMap<&str, &'a RawValue> {
        self.members
            .iter()
            .map(|(name, value)| (name.0.as_ref(), *value))
            .collect()
    }

    /// [`with_caller`](Self::with_caller) by reading the message into maps and writing it again.
    fn rebuilt_with_caller(&self, id: Option<u64>, caller: Option<&Caller>) -> Option<Bytes> {
        type Object<'t> = BTreeMap<String, &'t RawValue>;
        let mut params: Object = match self.get("params") {
            Some(params) => serde_json::from_str(params.get()).ok()?,
            None => Object::new(),
        };
        let mut meta: Object = match params.get("_meta") {
            Some(meta) => serde_json::from_str(meta.get()).ok()?,
            None => Object::new(),
        };
        let caller = caller.and_then(|caller| raw(&caller_meta(caller)));
        match &caller {
            Some(caller) => meta.insert(CALLER_META_KEY.to_owned(), caller),
            None => meta.remove(CALLER_META_KEY),
        };
        let meta = raw(&meta)?;
        params.insert("_meta".to_owned(), &meta);
        let params = raw(&params)?;
        let id = id.and_then(|id| raw(&id));
        let mut outgoing = self.last_of_each();
        outgoing.insert("params", &params);
        if let Some(id) = &id {
            outgoing.insert("id", id);
        }
        serde_json::to_vec(&outgoing).ok().map(Bytes::from)
    }
}

fn raw(value: &impl serde::Serialize) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(value).ok()
}

/// Writes a `_meta` object: the caller first (none without one), then the client's members
/// as written, except any caller of the client's.
fn write_meta(out: &mut Vec<u8>, caller: Option<&Caller>, members: &[(Name<'_>, &RawValue)]) {
    out.push(b'{');
    let mut first = true;
    if let Some(caller) = caller {
        out.push(b'"');
        out.extend_from_slice(CALLER_META_KEY.as_bytes());
        out.extend_from_slice(b"\":");
        // Writing into a Vec does not fail, and the caller's claims are strings.
        let _ = serde_json::to_writer(&mut *out, &caller_meta(caller));
        first = false;
    }
    for (name, value) in members {
        if name.0 == CALLER_META_KEY {
            continue;
        }
        if !first {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, name.0.as_ref());
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
        first = false;
    }
    out.push(b'}');
}

/// `text` with each span of `edits` (in order, not overlapping) replaced by its text.
fn splice(text: &[u8], edits: Vec<(Range<usize>, Vec<u8>)>) -> Bytes {
    let added: usize = edits.iter().map(|(_, with)| with.len()).sum();
    let mut out = Vec::with_capacity(text.len() + added);
    let mut at = 0;
    for (span, with) in edits {
        out.extend_from_slice(&text[at..span.start]);
        out.extend_from_slice(&with);
        at = span.end;
    }
    out.extend_from_slice(&text[at..]);
    Bytes::from(out)
}

/// A member's name, decoded (`"\u0069d"` is `id`), borrowed from the text when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }
            fn visit_string<E>(self, name: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(name)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// An object's members, repeated ones included, in the order written.
struct Members<'a>(Vec<(Name<'a>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn usr_1() -> Caller {
        Caller {
            sub: Some("usr_1".into()),
            client_id: Some("app".into()),
            scopes: vec!["mcp:tools".into()],
            ..Caller::default()
        }
    }

    #[test]
    fn a_param_is_taken_out_however_its_name_is_written() {
        let without_task = |text: &str| {
            let message = Message::parse(text.as_bytes()).unwrap();
            message
                .without_param("task")
                .map(|text| serde_json::from_slice::<Value>(&text).unwrap())
        };
        let plain = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "research", "arguments": {"task": "kept"}}});
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"research","arguments":{"task":"kept"},"task":{"ttl":60000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\u0074ask":{},"name":"research","arguments":{"task":"kept"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"task":1,"name":"research","task":2,"arguments":{"task":"kept"}}}"#,
        ] {
            assert_eq!(without_task(text), Some(plain.clone()), "{text}");
        }
        // Named only deeper (an argument), or not at all: the message goes as it is.
        assert_eq!(without_task(&plain.to_string()), None);
        assert_eq!(
            without_task(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            None
        );
        assert_eq!(
            without_task(r#"{"id":1,"method":"x","params":{"note":"\u00e9"}}"#),
            None
        );
    }

    fn forwarded(text: &str, id: Option<u64>, caller: Option<&Caller>) -> Option<Value> {
        let message = Message::parse(text.as_bytes()).unwrap();
        let sent = message.with_caller(id, caller)?;
        Some(serde_json::from_slice(&sent).unwrap())
    }

    /// How often each of the members the gateway changes is named in `sent`, at its place.
    fn repeats(sent: &[u8]) -> Vec<usize> {
        let count = |message: &Message, name: &str| {
            message.members.iter().filter(|(n, _)| n.0 == name).count()
        };
        let message = Message::parse(sent).unwrap();
        let mut counts = vec![count(&message, "id"), count(&message, "params")];
        let params = message
            .get("params")
            .and_then(|p| Message::parse(p.get().as_bytes()));
        if let Some(params) = params {
            counts.push(count(&params, "_meta"));
            let meta = params
                .get("_meta")
                .and_then(|m| Message::parse(m.get().as_bytes()));
            if let Some(meta) = meta {
                counts.push(count(&meta, CALLER_META_KEY));
            }
        }
        counts
    }

    #[test]
    fn the_caller_under_meta_is_always_the_gateways() {
        let caller = usr_1();
        let spoofed = r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","_meta":{"scalekit-mcp/caller":{"sub":"mallory"},"progressToken":7}}}"#;
        let message = forwarded(spoofed, Some(9), Some(&caller)).unwrap();
        assert_eq!(message["id"], 9);
        assert_eq!(message["params"]["name"], "x");
        assert_eq!(message["params"]["_meta"][CALLER_META_KEY]["sub"], "usr_1");
        assert_eq!(message["params"]["_meta"]["progressToken"], 7);
        let message = forwarded(spoofed, None, None).unwrap();
        assert_eq!(message["id"], "a");
        assert!(message["params"]["_meta"].get(CALLER_META_KEY).is_none());
        assert_eq!(message["params"]["_meta"]["progressToken"], 7);
        let bare = forwarded(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            None,
            Some(&caller),
        );
        assert_eq!(
            bare.unwrap()["params"]["_meta"][CALLER_META_KEY]["sub"],
            "usr_1"
        );
        for not_objects in [
            r#"{"id":1,"method":"m","params":[1]}"#,
            r#"{"method":"m","params":{"_meta":7}}"#,
        ] {
            assert!(
                forwarded(not_objects, Some(9), None).is_none(),
                "{not_objects}"
            );
        }
    }

    #[test]
    fn a_message_passes_as_written_but_for_the_id_and_the_caller() {
        let caller = usr_1();
        let text = r#"{"jsonrpc": "2.0", "id": "a", "method":"tools/call","params":{"name":"x","arguments":{"n":1.50}}} "#;
        let sent = Message::parse(text.as_bytes())
            .unwrap()
            .with_caller(Some(9), Some(&caller));
        assert_eq!(
            sent.unwrap(),
            Bytes::from(concat!(
                r#"{"jsonrpc": "2.0", "id": 9, "method":"tools/call","params":{"_meta":"#,
                r#"{"scalekit-mcp/caller":{"client_id":"app","org_id":null,"scopes":["mcp:tools"],"sub":"usr_1"}},"#,
                r#""name":"x","arguments":{"n":1.50}}} "#
            ))
        );
        let text = r#"{"method":"ping","id":1}"#;
        let sent = Message::parse(text.as_bytes())
            .unwrap()
            .with_caller(None, None);
        assert_eq!(
            sent.unwrap(),
            Bytes::from(r#"{"method":"ping","id":1,"params":{"_meta":{}}}"#)
        );
        let text =
            r#"{"method":"m","params":{"_meta":{"a":1,"scalekit-mcp/caller":0,"b":"\u00e9"}}}"#;
        let sent = Message::parse(text.as_bytes())
            .unwrap()
            .with_caller(None, None);
        assert_eq!(
            sent.unwrap(),
            Bytes::from(r#"{"method":"m","params":{"_meta":{"a":1,"b":"\u00e9"}}}"#)
        );
    }

    #[test]
    fn repeated_or_escaped_names_cannot_smuggle_a_caller_or_an_id() {
        let caller = usr_1();
        for text in [
            r#"{"id":1,"id":2,"method":"m","params":{"_meta":{"x":1},"_meta":{"scalekit-mcp/caller":{"sub":"mallory"}}}}"#,
            r#"{"id":1,"method":"m","params":{"_meta":{"scalekit-mcp/caller":1}},"params":{"_meta":{"scalekit-mcp/caller":2}}}"#,
            r#"{"\u0069d":1,"method":"m","params":{"_m\u0065ta":{"scalekit-mcp\/caller":{"sub":"mallory"},"k":"v"}}}"#,
            r#"{"id":1,"method":"m","params":{"_meta":{"scalekit-mcp/caller":1,"scalekit-mcp\/caller":2}}}"#,
        ] {
            let message = Message::parse(text.as_bytes()).unwrap();
            let sent = message.with_caller(Some(9), Some(&caller)).unwrap();
            assert!(
                repeats(&sent).iter().all(|count| *count == 1),
                "{text} → {sent:?}"
            );
            let sent: Value = serde_json::from_slice(&sent).unwrap();
            assert_eq!(sent["id"], 9, "{text}");
            assert_eq!(
                sent["params"]["_meta"][CALLER_META_KEY]["sub"], "usr_1",
                "{text}"
            );
        }
    }

    #[test]
    fn an_answer_gets_the_clients_id_and_keeps_the_rest_as_written() {
        let id = RawValue::from_string(r#""client-7""#.into()).unwrap();
        let with_id = |text: &str| {
            Message::parse(text.as_bytes())
                .unwrap()
                .with_id(&id)
                .unwrap()
        };
        assert_eq!(
            with_id(r#"{"jsonrpc":"2.0","id":12,"result":{"b":1.50,"a":[]}}"#),
            Bytes::from(r#"{"jsonrpc":"2.0","id":"client-7","result":{"b":1.50,"a":[]}}"#)
        );
        let repeated: Value =
            serde_json::from_slice(&with_id(r#"{"id":1,"result":{},"id":2}"#)).unwrap();
        assert_eq!(repeated, json!({"id": "client-7", "result": {}}));
        assert!(Message::parse(b"[1]").is_none());
    }

    /// Members a message may be made of: ids, methods, params with and without `_meta`, a
    /// client's caller, names written with escapes, repeated names, and what is not an object.
    const MEMBERS: &[&str] = &[
        r#""jsonrpc":"2.0""#,
        r#""id":7"#,
        r#""id" : "s""#,
        r#""\u0069d":8"#,
        r#""method":"tools/call""#,
        r#""me\u0074hod":"x""#,
        r#""params":{"name":"greet","arguments":{"name":"a"}}"#,
        r#""params":{"_meta":{"progressToken":1}}"#,
        r#""params":{"_meta":{"scalekit-mcp/caller":{"sub":"mallory"},"k":[1,2]}}"#,
        r#""params":{"_meta":{"scalekit-mcp\/caller":"x"}, "_meta" : {"a":1}}"#,
        r#""params":{"_meta":{"scalekit-mcp/caller":1,"scalekit-mcp/caller":2}}"#,
        r#""params":{"nested":{"_meta":{"scalekit-mcp/caller":{"sub":"n"}}}}"#,
        r#""params" : { }"#,
        r#""par\u0061ms":{"_meta":{}}"#,
        r#""params":null"#,
        r#""params":[]"#,
        r#""params":{"_meta":null}"#,
        r#""result":{"x":"\u00e9"}"#,
    ];

    fn message() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        (
            proptest::collection::vec(0..MEMBERS.len(), 0..5),
            proptest::bool::ANY,
        )
            .prop_map(|(picks, spaced)| {
                let members: Vec<&str> = picks.iter().map(|pick| MEMBERS[*pick]).collect();
                match spaced {
                    true => format!(" {{ {} }}\n", members.join(" , ")),
                    false => format!("{{{}}}", members.join(",")),
                }
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Spliced or rebuilt, a message reads the same, names each changed member once, and
        /// carries the gateway's caller and nobody else's.
        #[test]
        fn splicing_reads_as_rebuilding(text in message(), id in proptest::option::of(0..100u64), with_caller in proptest::bool::ANY) {
            let caller = usr_1();
            let caller = with_caller.then_some(&caller);
            let message = Message::parse(text.as_bytes()).unwrap();
            let sent = message.with_caller(id, caller);
            let rebuilt = message.rebuilt_with_caller(id, caller);
            proptest::prop_assert_eq!(sent.is_some(), rebuilt.is_some());
            if let (Some(sent), Some(rebuilt)) = (sent, rebuilt) {
                let read: Value = serde_json::from_slice(&sent).unwrap();
                let expected: Value = serde_json::from_slice(&rebuilt).unwrap();
                proptest::prop_assert_eq!(&read, &expected);
                // The id is the client's own when the gateway does not change it.
                let changed = repeats(&sent).into_iter().skip(usize::from(id.is_none()));
                proptest::prop_assert!(changed.into_iter().all(|count| count <= 1), "{:?}", sent);
                let forwarded = read["params"]["_meta"].get(CALLER_META_KEY);
                let ours = caller.map(|caller| json!(caller_meta(caller)));
                proptest::prop_assert_eq!(forwarded, ours.as_ref());
            }
        }

        /// An answer reads as it was written, with the client's id in place of the gateway's.
        #[test]
        fn an_answer_reads_the_same_with_the_clients_id(text in message()) {
            let id = RawValue::from_string(r#"{"client":[1]}"#.into()).unwrap();
            let answered = Message::parse(text.as_bytes()).unwrap().with_id(&id).unwrap();
            let mut expected: Value = serde_json::from_str(&text).unwrap();
            expected["id"] = json!({"client": [1]});
            let read: Value = serde_json::from_slice(&answered).unwrap();
            proptest::prop_assert_eq!(read, expected);
        }
    }
}
