//! RAUC's JSON output (`rauc status --detailed --output-format=json`, `rauc info
//! --output-format=json`) and its error text, read leniently: fields RAUC adds in later
//! versions are ignored, and a missing optional field is `None`, not an error.

use serde_json::{Map, Value};

use crate::{SlotStatus, SystemError, SystemStatus};

fn str_field(obj: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match obj.get(*n) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, SystemError> {
    v.as_object()
        .ok_or_else(|| SystemError::Parse(format!("{what} is not an object")))
}

/// Parses `rauc status --detailed --output-format=json`.
pub fn parse_status(json: &str) -> Result<SystemStatus, SystemError> {
    let v: Value = serde_json::from_str(json.trim())
        .map_err(|e| SystemError::Parse(format!("rauc status: {e}")))?;
    let top = object(&v, "rauc status")?;
    let booted = str_field(top, &["booted"]);
    let boot_primary = str_field(top, &["boot_primary", "boot-primary"]);
    let mut slots = Vec::new();
    // RAUC writes `"slots": [ {"rootfs.0": {...}}, {"rootfs.1": {...}} ]`.
    let entries: Vec<(&String, &Value)> = match top.get("slots") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| o.iter())
            .collect(),
        Some(Value::Object(o)) => o.iter().collect(),
        _ => return Err(SystemError::Parse("rauc status has no slots".into())),
    };
    for (name, s) in entries {
        let s = object(s, name)?;
        let state = str_field(s, &["state"]).unwrap_or_else(|| "unknown".into());
        let bootname = str_field(s, &["bootname"]);
        let detail = s
            .get("slot_status")
            .or_else(|| s.get("slot-status"))
            .and_then(Value::as_object);
        let bundle = detail
            .and_then(|d| d.get("bundle"))
            .and_then(Value::as_object);
        let when = |key: &str| {
            detail
                .and_then(|d| d.get(key))
                .and_then(Value::as_object)
                .and_then(|o| str_field(o, &["timestamp"]))
        };
        let is_booted =
            state == "booted" || (booted.is_some() && bootname.is_some() && booted == bootname);
        slots.push(SlotStatus {
            name: name.clone(),
            class: str_field(s, &["class"]).unwrap_or_default(),
            device: str_field(s, &["device"]).unwrap_or_default(),
            primary: boot_primary.as_deref() == Some(name.as_str()),
            booted: is_booted,
            bootname,
            state,
            boot_status: str_field(s, &["boot_status", "boot-status"]),
            version: bundle.and_then(|b| str_field(b, &["version"])),
            build: bundle.and_then(|b| str_field(b, &["build"])),
            installed_at: when("installed"),
            activated_at: when("activated"),
        });
    }
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(SystemStatus {
        compatible: str_field(top, &["compatible"]).unwrap_or_default(),
        booted,
        boot_primary,
        slots,
    })
}

/// Parses `rauc info --output-format=json`: the bundle's version and build.
pub fn parse_info(json: &str) -> Result<(String, Option<String>), SystemError> {
    // RAUC may print progress lines before the JSON document.
    let start = json
        .find('{')
        .ok_or_else(|| SystemError::Parse("rauc info printed no JSON".into()))?;
    let v: Value = serde_json::from_str(json[start..].trim())
        .map_err(|e| SystemError::Parse(format!("rauc info: {e}")))?;
    let top = object(&v, "rauc info")?;
    let version = str_field(top, &["version"])
        .ok_or_else(|| SystemError::Parse("the bundle has no version".into()))?;
    Ok((version, str_field(top, &["build"])))
}

/// The part of RAUC's output that says why it failed, without its log decoration.
pub(crate) fn error_message(
    stderr: &str,
    stdout: &str,
    status: std::process::ExitStatus,
) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // The informative lines are the errors; progress and warnings are not the reason.
    let errors: Vec<String> = lines
        .iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error")
                || l.contains("fail")
                || l.contains("invalid")
                || l.contains("refus")
        })
        .map(|l| strip_log_prefix(l).to_owned())
        .collect();
    let chosen = if errors.is_empty() {
        lines
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(|l| strip_log_prefix(l).to_owned())
            .collect()
    } else {
        errors
    };
    if chosen.is_empty() {
        format!("rauc exited with {status} and said nothing")
    } else {
        chosen.join("; ")
    }
}

/// Whether RAUC failed because there is no RAUC service to talk to (no system D-Bus, or no
/// `de.pengutronix.rauc` on it): a machine that is not the appliance, rather than an error
/// of the appliance's firmware.
pub(crate) fn no_service(stderr: &str, stdout: &str) -> bool {
    const SIGNS: [&str; 5] = [
        "error creating proxy",
        "could not connect",
        "org.freedesktop.dbus.error.serviceunknown",
        "org.freedesktop.dbus.error.namehasnoowner",
        "was not provided by any .service files",
    ];
    let text = format!("{stderr}\n{stdout}").to_ascii_lowercase();
    SIGNS.iter().any(|s| text.contains(s))
}

/// `(rauc:427): rauc-WARNING **: 09:25:21.951: text` and `rauc-Message: 09:17:01.025: text`
/// -> `text`.
fn strip_log_prefix(line: &str) -> &str {
    let mut rest = line;
    if rest.starts_with("(rauc:")
        && let Some(i) = rest.find("): ")
    {
        rest = &rest[i + 3..];
    }
    if (rest.starts_with("rauc-") || rest.starts_with("GLib"))
        && let Some(i) = rest.find(": ")
    {
        rest = &rest[i + 2..];
    }
    // A time stamp like 09:25:21.951 followed by ": ".
    if let Some(i) = rest.find(": ")
        && i > 0
        && rest[..i]
            .chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
    {
        rest = &rest[i + 2..];
    }
    rest
}
