//! `whenever new NAME [--dir PATH] [--sdk PATH]`: a step crate of one's own, ready to build and
//! run: its source (with a unit test of its logic, run natively by `cargo test`), its manifest, a
//! task it runs on, the toolchain pin, and a link where `whenever run --steps steps` finds the
//! component `cargo build --release --target wasm32-wasip2` makes.

use std::path::{Path, PathBuf};

use clap::Args;
use thiserror::Error;

use super::{EXIT_BAD_INPUT, EXIT_COMPLETED, EXIT_INTERNAL};

/// `whenever new NAME`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The step's name: a lowercase letter, then lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Where to create the crate (default: a folder NAME here); it must not exist, or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Whenever's step SDK (`steps/sdk`; default: the one beside the sources this binary was
    /// built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// The toolchain and target the steps are built with: the repository's own pin, so a step
/// crate gets the `wasm32-wasip2` target installed by rustup as this workspace does.
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

/// Creates the crate and says what to do next.
pub(crate) fn run(args: &NewArgs) -> u8 {
    match create(args) {
        Ok(dir) => {
            let shown = dir.display();
            println!(
                "created the step {name} in {shown}: its source (src/lib.rs), its manifest \
                 (steps/{name}.toml) and a task it runs on (task.json)\n\
                 next:\n  cd {shown}\n  cargo build --release --target wasm32-wasip2\n  whenever run task.json --steps steps",
                name = args.name
            );
            EXIT_COMPLETED
        }
        Err(e) => {
            eprintln!("whenever new: {e}");
            match e {
                NewError::BadInput(_) => EXIT_BAD_INPUT,
                NewError::Io(_) => EXIT_INTERNAL,
            }
        }
    }
}

/// Why no crate was created.
#[derive(Debug, Error)]
enum NewError {
    /// The name, the folder or the SDK given.
    #[error("{0}")]
    BadInput(String),
    /// Writing the files.
    #[error("{0}")]
    Io(String),
}

/// Writes the crate; returns its folder.
fn create(args: &NewArgs) -> Result<PathBuf, NewError> {
    let name = args.name.as_str();
    check_name(name).map_err(NewError::BadInput)?;
    let sdk = sdk_dir(args.sdk.as_deref()).map_err(NewError::BadInput)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && !dir.is_dir() {
        return Err(NewError::BadInput(format!(
            "{} exists and is not a folder",
            dir.display()
        )));
    }
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(NewError::BadInput(format!(
            "{} exists and is not empty: nothing was written",
            dir.display()
        )));
    }
    let io = |path: &Path, e: std::io::Error| NewError::Io(format!("cannot write {}: {e}", path.display()));
    for folder in [dir.join("src"), dir.join("steps")] {
        std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
    }
    for (file, text) in files(name, &sdk) {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    // The step's component, under the step's name, is the build's output: each build is the
    // version `whenever run` (or a watching `whenever serve`) finds.
    let component = format!("{name}.wasm");
    let target_dir = ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .into_iter()
        .find_map(std::env::var_os)
        .map(PathBuf::from);
    let built = built_component(name, &dir, target_dir);
    let link = dir.join("steps").join(&component);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&built, &link).map_err(|e| io(&link, e))?;
    #[cfg(not(unix))]
    eprintln!(
        "whenever new: after each build, copy {} (from steps/) to {}",
        built.display(),
        link.display()
    );
    Ok(dir)
}

/// Where `cargo build --release --target wasm32-wasip2` puts step `name`'s component, for the
/// link in the crate's `steps/` folder: its own `target/`, or the `CARGO_TARGET_DIR` (or
/// `CARGO_BUILD_TARGET_DIR`) set, which cargo builds into instead (a relative one from where cargo runs: the crate at `crate_dir`).
fn built_component(name: &str, crate_dir: &Path, target_dir: Option<PathBuf>) -> PathBuf {
    let target = match target_dir.filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => {
            let dir = crate_dir.join(dir);
            std::path::absolute(&dir).unwrap_or(dir)
        }
        None => PathBuf::from("../target"),
    };
    target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// A step's name as the host takes it, and as a crate name: it is both.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if starts && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "invalid step name {name:?}: start with a lowercase letter, then use lowercase letters, \
             digits, '-' and '_' (stricter than the host's rule, letters, digits, '-' and '_': the \
             new step's crate is named after it, and Cargo warns of other crate names)"
        ))
    }
}

/// The SDK's folder, absolute: the one given, or the one beside this binary's sources.
fn sdk_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    let (dir, whose) = match given {
        Some(dir) => (dir.to_path_buf(), "--sdk"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../steps/sdk"),
            "the sources this whenever was built from",
        ),
    };
    let manifest = dir.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("name = \"whenever-step-sdk\""));
    if !is_sdk {
        return Err(format!(
            "no step SDK at {} ({whose}): give --sdk with the path of steps/sdk in a checkout of whenever",
            dir.display()
        ));
    }
    dir.canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))
}

/// Type names the generated source uses already (the SDK's prelude and Rust's), which the step's
/// own type must not shadow.
const TAKEN_TYPE_NAMES: &[&str] = &[
    "Self",
    "Step",
    "StepError",
    "ConnectorError",
    "ErrorKind",
    "Map",
    "Value",
    "String",
    "Vec",
    "Option",
    "Result",
    "Box",
    "Some",
    "None",
    "Ok",
    "Err",
];

/// The step's type in its source: the name in upper camel case (`order-announcer`:
/// `OrderAnnouncer`), with `Step` after it where that would shadow a name the source uses (`step`:
/// `StepStep`, `value`: `ValueStep`).
fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if TAKEN_TYPE_NAMES.contains(&camel.as_str()) {
        camel + "Step"
    } else {
        camel
    }
}

/// The crate's files: (path in the crate, text).
fn files(name: &str, sdk: &Path) -> Vec<(String, String)> {
    // A TOML string, quoted and escaped whatever the path holds.
    let sdk = toml::Value::String(sdk.display().to_string().replace('\\', "/")).to_string();
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
whenever-step-sdk = {{ path = {sdk} }}

# A crate of its own, even when created inside another workspace.
[workspace]

# Small components, as the RetailMax steps are built.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
# The name section stays: a trap's backtrace names the functions.
strip = false
"#
    );
    let struct_name = type_name(name);
    let lib_rs = format!(
        r##"//! The step {name}: when an order arrives that was not announced yet, it posts it to Slack
//! and completes the task. Change the condition and the content to make it yours.
use whenever_step_sdk::prelude::*;

struct {struct_name};

impl Step for {struct_name} {{
    /// When the step runs: the data must match this pattern (`null`: the key is absent).
    fn condition() -> Value {{
        condition!({{ order: {{ id: String, total: Number, announced: null }} }})
    }}

    /// What it does: reads the data, calls connectors its manifest grants, writes new fields.
    fn content(data: &mut Value) -> Result<(), StepError> {{
        let text = announcement(get_str(data, "order.id"), get_f64(data, "order.total"));
        log_info!("{{text}}");
        let posted = connectors::call("slackCom", "send", &json!({{ "channel": "#orders", "text": text }}))?;
        set(data, "order.announced", true);
        set(data, "order.announcement", posted["ts"].clone());
        // A task is completed when a step says so; here this step is the whole flow.
        task::complete();
        Ok(())
    }}
}}

export_step!({struct_name});

/// The message posted for an order: plain logic, which `cargo test` tests natively (the host's
/// imports, such as connectors, exist only in the component).
fn announcement(id: &str, total: f64) -> String {{
    format!("Order {{id}}: {{total:.2}}")
}}

#[cfg(test)]
mod tests {{
    #[test]
    fn an_order_is_announced_with_its_total() {{
        assert_eq!(super::announcement("o-1", 120.5), "Order o-1: 120.50");
    }}
}}
"##
    );
    let manifest = format!(
        r#"# The manifest of the step {name} (whenever's README.md, "Writing a step").
# The connectors it may call; a call to any other returns not-granted.
connectors = ["slackCom"]
# The data paths its content reads (and those its condition tests are given too). A path not
# listed reads as absent, and the run's log warns of it ("read `order.customer.email`, which this
# step is not given"): add each path the content comes to read, or remove `reads` to be given the
# whole task data.
reads = ["order.id", "order.total"]
"#
    );
    [
        ("Cargo.toml".to_string(), cargo_toml),
        ("rust-toolchain.toml".to_string(), TOOLCHAIN.to_string()),
        (".gitignore".to_string(), "/target\n".to_string()),
        ("src/lib.rs".to_string(), lib_rs),
        (format!("steps/{name}.toml"), manifest),
        (
            "task.json".to_string(),
            "{\"order\": {\"id\": \"o-1\", \"total\": 120.5}}\n".to_string(),
        ),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_a_crate_name_and_a_type_name() {
        for good in ["order-announcer", "a", "step_2", "x-1-y"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Order", "2fast", "-a", "a b", "a.b", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?} is refused");
        }
        assert_eq!(type_name("order-announcer"), "OrderAnnouncer");
        assert_eq!(type_name("step_2"), "Step2");
        assert_eq!(type_name("a--b"), "AB");
        assert_eq!(type_name("self"), "SelfStep");
        for (name, type_name_for_it) in [
            ("step", "StepStep"),
            ("value", "ValueStep"),
            ("result", "ResultStep"),
            ("ok", "OkStep"),
        ] {
            assert_eq!(type_name(name), type_name_for_it);
        }
    }

    #[test]
    fn the_link_follows_where_cargo_builds() {
        let crate_dir = Path::new("/work/order-announcer");
        let built = |target: Option<&str>| built_component("order-announcer", crate_dir, target.map(PathBuf::from));
        let file = "wasm32-wasip2/release/order_announcer.wasm";
        assert_eq!(built(None), Path::new("../target").join(file));
        assert_eq!(built(Some("")), Path::new("../target").join(file));
        assert_eq!(built(Some("/cache/t")), Path::new("/cache/t").join(file));
        // A relative target folder is cargo's, run in the crate.
        assert_eq!(built(Some("out")), crate_dir.join("out").join(file));
    }
}
