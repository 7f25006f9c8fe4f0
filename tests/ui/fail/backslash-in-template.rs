// `\:` would undo the escaping of `:` in argument values.
#[aside::cached(key = "pair:<a>\\:<b>")]
async fn pair(a: String, b: String) -> String {
    a + &b
}

fn main() {}
