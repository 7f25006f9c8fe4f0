#![deny(warnings)]

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::Serialize;

struct Query {
    term: String,
}

#[aside::cached(key = "search:<query.term>:<page>")]
async fn search(query: &Query, page: &u32) -> Vec<String> {
    vec![format!("{}#{page}", query.term)]
}

#[aside::cached(key = "name:<name>", ttl = "1d")]
async fn shout(name: &str) -> String {
    name.to_uppercase()
}

#[aside::cached(key = "id:<value>")]
async fn identity<T: Display + Serialize + DeserializeOwned + Clone + Send + Sync + 'static>(
    value: T,
) -> T {
    value
}

#[aside::cached(key = "parse:<text>")]
async fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
    if text.is_empty() {
        return Ok(0);
    }
    Ok(text.parse::<u32>()? + 1)
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let query = Query { term: "lamp".into() };
    assert_eq!(search(&query, &2).await, vec!["lamp#2".to_owned()]);
    assert_eq!(shout("hi").await, "HI");
    assert_eq!(identity(3u8).await, 3);
    assert_eq!(parse("41").await, Ok(42));
}
