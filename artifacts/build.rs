//! Builds every step crate under `../steps` for `wasm32-wasip2` with plain cargo and writes
//! `artifacts.rs`: the path of each component and of its manifest, and the bundled RetailMax steps'
//! bytes. `cargo test` alone thus builds everything, as wasmtime's own test-programs do.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    let steps = root.join("steps");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>/out: share one wasm build across profiles.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-steps"))
        .unwrap_or_else(|| out_dir.join("wasm-steps"));

    // A folder named here is scanned whole: a step crate added under `steps/` (or its
    // `testing/`) is built too, not only the crates there were at the last build.
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", steps.display());

    let bundled = step_crates(&steps);
    let testing = step_crates(&steps.join("testing"));

    ensure_wasm_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&steps)
        .args(["build", "--release", "--workspace", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars() {
        if key.starts_with("CARGO_FEATURE_") || key.starts_with("CARGO_CFG_") {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().expect("cannot run cargo for the wasm32-wasip2 steps");
    assert!(status.success(), "building the steps for wasm32-wasip2 failed");

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut code = String::new();
    code.push_str("/// The bundled RetailMax steps: (name, component bytes, manifest text).\n");
    code.push_str("pub const RETAILMAX: &[BundledStep] = &[\n");
    for (name, dir) in &bundled {
        let wasm = component_path(&wasm_dir, name);
        let manifest = dir.join("step.toml");
        writeln!(
            code,
            "    BundledStep {{ name: {name:?}, component: include_bytes!({wasm:?}), manifest: include_str!({manifest:?}) }},",
            wasm = wasm.display().to_string(),
            manifest = manifest.display().to_string(),
        )
        .expect("write");
    }
    code.push_str("];\n\n");
    code.push_str("/// Test components (misbehaving and probing steps): paths of the component and its manifest.\n");
    code.push_str("pub mod testing {\n    use super::StepFiles;\n");
    for (name, dir) in &testing {
        let wasm = component_path(&wasm_dir, name);
        let manifest = dir.join("step.toml");
        writeln!(
            code,
            "    /// The `{name}` test component.\n    pub const {konst}: StepFiles = StepFiles {{ name: {name:?}, component: {wasm:?}, manifest: {manifest:?} }};",
            konst = name.to_uppercase().replace('-', "_"),
            wasm = wasm.display().to_string(),
            manifest = manifest.display().to_string(),
        )
        .expect("write");
    }
    code.push_str("}\n");
    fs::write(out_dir.join("artifacts.rs"), code).expect("write artifacts.rs");
}

/// The step crates directly under `dir` (those with a `step.toml`), sorted by name.
fn step_crates(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut crates: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("step.toml").is_file() && p.join("Cargo.toml").is_file())
                .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
                .collect()
        })
        .unwrap_or_default();
    crates.sort();
    crates
}

fn component_path(wasm_dir: &Path, name: &str) -> PathBuf {
    let file = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(file.is_file(), "the step {name} did not produce {}", file.display());
    file
}

/// rust-toolchain.toml makes rustup install the `wasm32-wasip2` target with the toolchain, but
/// not when that toolchain was already installed without it: add it then, rather than failing
/// with "can't find crate for `core`".
fn ensure_wasm_target() {
    const TARGET: &str = "wasm32-wasip2";
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|dir| dir.is_dir()) {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing: running `rustup target add {TARGET}`");
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    match rustup.status() {
        Ok(status) if status.success() => {}
        _ => println!("cargo:warning=could not add the {TARGET} target; install it with `rustup target add {TARGET}`"),
    }
}
