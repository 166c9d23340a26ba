//! Test component: a plain command (`fn main`), built for the `wasi:cli` world instead of the
//! step world.

fn main() {
    println!("hello from a command, not a step");
}
