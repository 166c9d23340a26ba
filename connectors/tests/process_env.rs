//! `Registry::from_config_in` reads secrets from the process environment. This binary holds a
//! single test, so changing the environment races with no other thread.

use std::path::Path;

use whenever_connectors::{ConnectorsConfig, Registry};

const VAR: &str = "WHENEVER_TEST_PROCESS_ENV_STRIPE_KEY";

#[test]
fn from_config_in_reads_the_named_variable_from_the_process_environment() {
    #[derive(serde::Deserialize)]
    struct File {
        connectors: ConnectorsConfig,
    }
    let text = format!(
        "[connectors.stripe]\nkind = \"stripe\"\nsecret_key_env = \"{VAR}\"\nbase_url = \"http://127.0.0.1:1\"\n"
    );
    let file: File = toml::from_str(&text).expect("valid TOML");

    // SAFETY: the only test in this binary; no other thread reads the environment meanwhile.
    unsafe { std::env::remove_var(VAR) };
    let e = Registry::from_config_in(&file.connectors, Path::new("")).err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.connector == "stripe" && e.message.contains(&format!("`{VAR}`"))),
        "{e:?}"
    );

    // SAFETY: as above.
    unsafe { std::env::set_var(VAR, "sk_test_fromTheProcessEnvironment") };
    let reg = Registry::from_config_in(&file.connectors, Path::new(""));
    // SAFETY: as above.
    unsafe { std::env::remove_var(VAR) };
    let Ok(reg) = reg else {
        panic!("builds once the variable is set: {reg:?}")
    };
    assert!(reg.contains("stripe"));
    assert!(!format!("{reg:?}").contains("fromTheProcessEnvironment"));
}
