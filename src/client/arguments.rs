//! Tool arguments from the command line, checked against the tool's input schema before the call.
//!
//! Three ways in, merged in this order (later wins):
//! - `--args '<json object>'`, `--args @file.json` or `--args -` (stdin): a whole object;
//! - `key=value`: coerced by the property's schema type. A string property keeps the text as is
//!   (zip codes like `02134`, ids), an integer / number / boolean is parsed, an array / object is
//!   read as JSON. Without a schema type the value stays a string.
//! - `key:=<json>`: raw JSON, never coerced (the httpie / xh convention).
//!
//! Then every argument is checked against its property's `type` (and `enum`), and every
//! required property must be present, so a mistake is a usage error (exit 2) naming the argument
//! and the expected type instead of a round trip and a server-side error. The checks are
//! deliberately shallow: top-level properties only, which is what a command line can express.

use std::io::Read;

use serde_json::{Map, Value};

use crate::error::ExitError;

/// One `key=value` or `key:=json` from the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Pair {
    /// `key=value`: text to coerce by the schema.
    Text(String, String),
    /// `key:=json`: a JSON value, used as is.
    Json(String, Value),
}

impl Pair {
    pub fn key(&self) -> &str {
        match self {
            Pair::Text(key, _) | Pair::Json(key, _) => key,
        }
    }
}

fn usage(message: String) -> anyhow::Error {
    ExitError::usage(message).into()
}

/// Parses `key=value` or `key:=json`. The first `=` splits; a `:` right before it makes the
/// value JSON.
pub fn parse_pair(text: &str) -> anyhow::Result<Pair> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(usage(format!(
            "{text:?} is not an argument: write key=value (text, coerced by the tool's schema) \
             or key:=<json>"
        )));
    };
    if let Some(key) = key.strip_suffix(':') {
        if key.is_empty() {
            return Err(usage(format!("{text:?} has no argument name before :=")));
        }
        let json = serde_json::from_str(value).map_err(|err| {
            usage(format!(
                "the value of {key}:= is not JSON ({err}); for text use {key}=<value>"
            ))
        })?;
        return Ok(Pair::Json(key.to_owned(), json));
    }
    if key.is_empty() {
        return Err(usage(format!("{text:?} has no argument name before =")));
    }
    Ok(Pair::Text(key.to_owned(), value.to_owned()))
}

/// The object given with `--args`: literal JSON, `@file`, or `-` for stdin.
pub fn read_args_object(spec: &str, stdin: impl Read) -> anyhow::Result<Map<String, Value>> {
    let (text, origin) = if spec == "-" {
        let mut text = String::new();
        let mut stdin = stdin;
        stdin
            .read_to_string(&mut text)
            .map_err(|err| usage(format!("reading --args from stdin: {err}")))?;
        (text, "stdin".to_owned())
    } else if let Some(path) = spec.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|err| usage(format!("reading --args file {path}: {err}")))?;
        (text, path.to_owned())
    } else {
        (spec.to_owned(), "--args".to_owned())
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(usage(format!(
            "{origin} must hold a JSON object of arguments, not {}",
            kind(&other)
        ))),
        Err(err) => Err(usage(format!("{origin} is not valid JSON: {err}"))),
    }
}

/// The arguments for a call to `tool` with `schema`: `base` (from `--args`), then `pairs`,
/// coerced and checked.
pub fn build(
    tool: &str,
    schema: &Map<String, Value>,
    base: Map<String, Value>,
    pairs: &[Pair],
) -> anyhow::Result<Map<String, Value>> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let property = |key: &str| {
        properties
            .and_then(|properties| properties.get(key))
            .map(|property| resolve(schema, property))
    };
    let mut arguments = base;
    for pair in pairs {
        let value = match pair {
            Pair::Json(_, value) => Ok(value.clone()),
            Pair::Text(key, text) => coerce(key, text, property(key)),
        };
        arguments.insert(pair.key().to_owned(), value?);
    }

    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (key, value) in &arguments {
        match property(key) {
            Some(property) => check(key, value, property)?,
            None if closed => {
                let known: Vec<&str> = properties
                    .map(|properties| properties.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(usage(format!(
                    "{tool} takes no argument `{key}`{}",
                    suggestion(key, &known, "; its arguments are")
                )));
            }
            None => {}
        }
    }
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for key in required {
        if !arguments.contains_key(key) {
            let expected = property(key).map(describe_type).unwrap_or_default();
            return Err(usage(format!(
                "{tool} needs the argument `{key}`{}: add {key}=<value>",
                if expected.is_empty() {
                    String::new()
                } else {
                    format!(" ({expected})")
                }
            )));
        }
    }
    Ok(arguments)
}

/// A property schema with a local `$ref` (`#/$defs/…` or `#/definitions/…`) followed once, as
/// schemars writes nested types.
fn resolve<'a>(root: &'a Map<String, Value>, property: &'a Value) -> &'a Value {
    let Some(reference) = property.get("$ref").and_then(Value::as_str) else {
        return property;
    };
    let mut target = None;
    for prefix in ["#/$defs/", "#/definitions/"] {
        if let Some(name) = reference.strip_prefix(prefix) {
            target = root
                .get(&prefix[2..prefix.len() - 1])
                .and_then(|defs| defs.get(name));
        }
    }
    target.unwrap_or(property)
}

/// The JSON types a property allows: `type` as a string or a list, or the types of its
/// `anyOf` / `oneOf` branches. Empty when the schema does not say.
pub fn schema_types(property: &Value) -> Vec<String> {
    match property.get("type") {
        Some(Value::String(name)) => return vec![name.clone()],
        Some(Value::Array(names)) => {
            return names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        _ => {}
    }
    let mut types = Vec::new();
    for combinator in ["anyOf", "oneOf"] {
        for branch in property
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for name in schema_types(branch) {
                if !types.contains(&name) {
                    types.push(name);
                }
            }
        }
    }
    types
}

/// How the type of a property reads in a message: `integer`, `string or null`.
pub fn describe_type(property: &Value) -> String {
    let types = schema_types(property);
    let mut text = types.join(" or ");
    if types.iter().any(|name| name == "array")
        && let Some(items) = property.get("items")
    {
        let item_types = schema_types(items);
        if !item_types.is_empty() {
            text = text.replacen("array", &format!("array of {}", item_types.join("|")), 1);
        }
    }
    text
}

/// Turns `text` into the value the property's schema asks for.
fn coerce(key: &str, text: &str, property: Option<&Value>) -> anyhow::Result<Value> {
    let types = property.map(schema_types).unwrap_or_default();
    let allows = |name: &str| types.iter().any(|allowed| allowed == name);
    // A string stays a string whenever the schema allows one (zip codes, ids); an unknown type
    // too: guessing would turn "02134" into 2134.
    if types.is_empty() || allows("string") {
        return Ok(Value::String(text.to_owned()));
    }
    let trimmed = text.trim();
    if allows("integer") {
        if let Ok(number) = trimmed.parse::<i64>() {
            return Ok(Value::from(number));
        }
        if let Ok(number) = trimmed.parse::<u64>() {
            return Ok(Value::from(number));
        }
    }
    if allows("number")
        && let Ok(number) = trimmed.parse::<f64>()
        && let Some(number) = serde_json::Number::from_f64(number)
    {
        return Ok(Value::Number(number));
    }
    if allows("boolean") {
        match trimmed {
            "true" => return Ok(Value::Bool(true)),
            "false" => return Ok(Value::Bool(false)),
            _ => {}
        }
    }
    if (allows("array") || allows("object"))
        && let Ok(value @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str(trimmed)
    {
        return Ok(value);
    }
    if allows("null") && trimmed == "null" {
        return Ok(Value::Null);
    }
    let expected = property.map(describe_type).unwrap_or_default();
    let hint = if allows("array") || allows("object") {
        format!(" (JSON, e.g. {key}='[1,2]' or {key}:='{{\"a\":1}}')")
    } else {
        String::new()
    };
    Err(usage(format!(
        "argument `{key}` expects {} {expected}{hint}, got {text:?}",
        article(&expected)
    )))
}

/// Checks a value (coerced, or given as JSON) against its property's type and enum.
fn check(key: &str, value: &Value, property: &Value) -> anyhow::Result<()> {
    let types = schema_types(property);
    if !types.is_empty() && !types.iter().any(|name| fits(value, name)) {
        let expected = describe_type(property);
        return Err(usage(format!(
            "argument `{key}` expects {} {expected}, got {} {}",
            article(&expected),
            kind(value),
            value
        )));
    }
    if let Some(allowed) = property.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(usage(format!(
            "argument `{key}` must be one of {}, got {value}",
            list.join(", ")
        )));
    }
    Ok(())
}

fn fits(value: &Value, type_name: &str) -> bool {
    match type_name {
        "string" => value.is_string(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value.as_f64().is_some_and(|number| number.fract() == 0.0)
        }
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// The JSON kind of a value, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(number) if number.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn article(noun: &str) -> &'static str {
    match noun.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The names in `known` closest to `given` (Levenshtein distance at most a third of the
/// length, at least 2), best first.
pub fn closest<'a>(given: &str, known: &[&'a str]) -> Vec<&'a str> {
    let limit = (given.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .map(|name| (edit_distance(given, name), *name))
        .filter(|(distance, name)| {
            *distance <= limit || name.contains(given) || given.contains(*name)
        })
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, name)| name).take(3).collect()
}

/// `; did you mean `x`?` when something is close, else `; <list_intro> a, b, c` (or nothing).
pub fn suggestion(given: &str, known: &[&str], list_intro: &str) -> String {
    let close = closest(given, known);
    if !close.is_empty() {
        let names: Vec<String> = close.iter().map(|name| format!("`{name}`")).collect();
        return format!("; did you mean {}?", names.join(" or "));
    }
    if known.is_empty() {
        return String::new();
    }
    format!("; {list_intro} {}", known.join(", "))
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::{Exit, exit_code_for};

    fn schema() -> Map<String, Value> {
        json!({
            "type": "object",
            "properties": {
                "zip": {"type": "string"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
                "flag": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "meta": {"type": "object"},
                "note": {"type": ["string", "null"]},
                "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "nested": {"$ref": "#/$defs/Nested"},
                "free": {}
            },
            "required": ["zip"],
            "$defs": {"Nested": {"type": "object", "properties": {"a": {"type": "integer"}}}}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn build_from(pairs: &[&str]) -> anyhow::Result<Map<String, Value>> {
        let pairs: Vec<Pair> = pairs.iter().map(|p| parse_pair(p).unwrap()).collect();
        build("tool", &schema(), Map::new(), &pairs)
    }

    fn value(pairs: &[&str], key: &str) -> Value {
        build_from(pairs).unwrap()[key].clone()
    }

    fn usage_message(result: anyhow::Result<Map<String, Value>>) -> String {
        let error = result.unwrap_err();
        assert_eq!(exit_code_for(&error), Exit::Usage, "{error:#}");
        format!("{error:#}")
    }

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_pair("q=a=b").unwrap(),
            Pair::Text("q".into(), "a=b".into())
        );
        assert_eq!(
            parse_pair("n:=[1,2]").unwrap(),
            Pair::Json("n".into(), json!([1, 2]))
        );
        assert_eq!(parse_pair("e=").unwrap(), Pair::Text("e".into(), "".into()));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
        assert!(parse_pair(":=1").is_err());
        let error = parse_pair("n:=nope").unwrap_err();
        assert!(format!("{error}").contains("not JSON"), "{error}");
    }

    #[test]
    fn string_properties_stay_strings() {
        assert_eq!(value(&["zip=02134"], "zip"), json!("02134"));
        assert_eq!(value(&["zip=02134", "note=true"], "note"), json!("true"));
        assert_eq!(value(&["zip=1", "free=42"], "free"), json!("42"));
        assert_eq!(value(&["zip=1", "unknown=007"], "unknown"), json!("007"));
    }

    #[test]
    fn integers_are_parsed_and_checked() {
        assert_eq!(value(&["zip=1", "count=42"], "count"), json!(42));
        assert_eq!(value(&["zip=1", "count=-3"], "count"), json!(-3));
        assert_eq!(value(&["zip=1", "limit=5"], "limit"), json!(5));
        assert_eq!(value(&["zip=1", "limit=null"], "limit"), json!(null));
        let message = usage_message(build_from(&["zip=1", "count=4.5"]));
        assert!(
            message.contains("argument `count` expects an integer, got \"4.5\""),
            "{message}"
        );
        let message = usage_message(build_from(&["zip=1", "count=many"]));
        assert!(message.contains("`count` expects an integer"), "{message}");
    }

    #[test]
    fn numbers_are_parsed_and_checked() {
        assert_eq!(value(&["zip=1", "ratio=0.5"], "ratio"), json!(0.5));
        assert_eq!(value(&["zip=1", "ratio=3"], "ratio"), json!(3.0));
        let message = usage_message(build_from(&["zip=1", "ratio=half"]));
        assert!(message.contains("`ratio` expects a number"), "{message}");
        let message = usage_message(build_from(&["zip=1", "ratio=NaN"]));
        assert!(message.contains("`ratio` expects a number"), "{message}");
    }

    #[test]
    fn booleans_are_parsed_and_checked() {
        assert_eq!(value(&["zip=1", "flag=true"], "flag"), json!(true));
        assert_eq!(value(&["zip=1", "flag=false"], "flag"), json!(false));
        let message = usage_message(build_from(&["zip=1", "flag=yes"]));
        assert!(
            message.contains("argument `flag` expects a boolean, got \"yes\""),
            "{message}"
        );
    }

    #[test]
    fn arrays_and_objects_are_json() {
        assert_eq!(
            value(&["zip=1", r#"tags=["a","b"]"#], "tags"),
            json!(["a", "b"])
        );
        assert_eq!(
            value(&["zip=1", r#"meta={"k":1}"#], "meta"),
            json!({"k": 1})
        );
        assert_eq!(
            value(&["zip=1", r#"nested={"a":1}"#], "nested"),
            json!({"a": 1})
        );
        let message = usage_message(build_from(&["zip=1", "tags=a,b"]));
        assert!(
            message.contains("`tags` expects an array of string"),
            "{message}"
        );
        let message = usage_message(build_from(&["zip=1", "meta=[1]"]));
        assert!(message.contains("`meta` expects an object"), "{message}");
    }

    #[test]
    fn raw_json_is_used_as_is_and_checked() {
        assert_eq!(value(&["zip=1", "count:=7"], "count"), json!(7));
        assert_eq!(value(&["zip:=\"02134\""], "zip"), json!("02134"));
        assert_eq!(value(&["zip=1", "free:=[1]"], "free"), json!([1]));
        let message = usage_message(build_from(&["zip:=2134"]));
        assert!(
            message.contains("argument `zip` expects a string, got an integer 2134"),
            "{message}"
        );
    }

    #[test]
    fn enums_are_checked() {
        assert_eq!(value(&["zip=1", "color=red"], "color"), json!("red"));
        let message = usage_message(build_from(&["zip=1", "color=green"]));
        assert!(
            message.contains("`color` must be one of \"red\", \"blue\""),
            "{message}"
        );
    }

    #[test]
    fn required_arguments_are_named() {
        let message = usage_message(build_from(&["count=1"]));
        assert!(
            message.contains("tool needs the argument `zip` (string): add zip=<value>"),
            "{message}"
        );
    }

    #[test]
    fn args_objects_merge_under_pairs_and_are_checked() {
        let base = read_args_object(r#"{"zip":"02134","count":1}"#, std::io::empty()).unwrap();
        let pairs = [parse_pair("count=2").unwrap()];
        let arguments = build("tool", &schema(), base, &pairs).unwrap();
        assert_eq!(Value::Object(arguments), json!({"zip":"02134","count":2}));

        let base = read_args_object("-", r#"{"zip":1}"#.as_bytes()).unwrap();
        let message = usage_message(build("tool", &schema(), base, &[]));
        assert!(message.contains("`zip` expects a string"), "{message}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("args.json");
        std::fs::write(&path, r#"{"zip":"1"}"#).unwrap();
        let base = read_args_object(&format!("@{}", path.display()), std::io::empty()).unwrap();
        assert_eq!(base["zip"], json!("1"));

        for bad in ["[1]", "{", "@/nonexistent/args.json"] {
            let error = read_args_object(bad, std::io::empty()).unwrap_err();
            assert_eq!(exit_code_for(&error), Exit::Usage, "{bad}: {error}");
        }
    }

    #[test]
    fn closed_schemas_refuse_unknown_arguments_with_a_suggestion() {
        let mut closed = schema();
        closed.insert("additionalProperties".into(), json!(false));
        let pairs = [parse_pair("zip=1").unwrap(), parse_pair("cont=1").unwrap()];
        let message = usage_message(build("tool", &closed, Map::new(), &pairs));
        assert!(
            message.contains("tool takes no argument `cont`; did you mean `count`?"),
            "{message}"
        );
    }

    #[test]
    fn closest_names_rank_by_edit_distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        let known = ["greet_user", "whoami", "get_user"];
        assert_eq!(closest("greet_usr", &known)[0], "greet_user");
        assert_eq!(closest("greet", &known), vec!["greet_user"]);
        assert!(closest("zzzzzzzz", &known).is_empty());
        assert_eq!(
            suggestion("zzz", &known, "tools:"),
            "; tools: greet_user, whoami, get_user"
        );
    }
}
