//! `call`'s argument handling on arbitrary text: the first line is a tool's input schema (JSON),
//! every further line one `key=value` / `key:=json` argument. Nothing panics; an accepted
//! `key=value` for a `string` property keeps its text exactly (zip codes, ids); every required
//! argument is present in what would be sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use scalekit_mcp::client::arguments::{Pair, build, parse_pair};
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let schema: Map<String, Value> = match lines.next().map(serde_json::from_str) {
        Some(Ok(Value::Object(schema))) => schema,
        _ => Map::new(),
    };
    let pairs: Vec<Pair> = lines.filter_map(|line| parse_pair(line).ok()).collect();
    let Ok(arguments) = build("tool", &schema, Map::new(), &pairs) else {
        return;
    };
    for pair in &pairs {
        if let Pair::Text(key, value) = pair {
            let is_string = schema
                .get("properties")
                .and_then(|properties| properties.get(key))
                .and_then(|property| property.get("type"))
                == Some(&Value::String("string".into()));
            let last = pairs.iter().rev().find(|later| later.key() == key) == Some(pair);
            if is_string && last {
                assert_eq!(arguments.get(key), Some(&Value::String(value.clone())));
            }
        }
    }
    for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = key.as_str() {
            assert!(arguments.contains_key(key), "required {key} missing");
        }
    }
});
