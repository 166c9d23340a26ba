//! Test component: the step world as a later host might offer it, with a `task` function this
//! host does not provide, which its content calls (so the component imports it).

wit_bindgen::generate!({
    inline: r#"
        package whenever:step@0.1.0;

        interface task {
            id: func() -> string;
            from-the-future: func();
        }

        world step {
            import task;
            export condition: func() -> string;
            export content: func(data: string) -> result<string, string>;
        }
    "#,
});

struct FromTheFuture;

impl Guest for FromTheFuture {
    fn condition() -> String {
        "{\"future\": true}".into()
    }
    fn content(data: String) -> Result<String, String> {
        whenever::step::task::from_the_future();
        Ok(data)
    }
}

export!(FromTheFuture);
