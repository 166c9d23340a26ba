//! Test component: exports `condition` and `content` with other signatures than the step world's
//! (a condition that returns a number, a content without a result).

wit_bindgen::generate!({
    inline: r#"
        package other:step@0.1.0;

        world step {
            export condition: func() -> u32;
            export content: func(data: string) -> string;
        }
    "#,
});

struct WrongSignature;

impl Guest for WrongSignature {
    fn condition() -> u32 {
        42
    }
    fn content(data: String) -> String {
        data
    }
}

export!(WrongSignature);
