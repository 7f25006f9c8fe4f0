// Key and tag templates: each module is one mistake in a template, and the .stderr has the one error each must give.

mod adjacent_placeholders {
#[aside::cached(key = "range:<from>-<to>")]
async fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}
}

mod backslash_in_template {
// `\:` would undo the escaping of `:` in argument values.
#[aside::cached(key = "pair:<a>\\:<b>")]
async fn pair(a: String, b: String) -> String {
    a + &b
}
}

mod key_not_a_string {
#[aside::cached(key = 42)]
async fn get(id: u64) -> u64 {
    id
}
}

mod unclosed_placeholder {
#[aside::cached(key = "product:<id")]
async fn get_product(id: u64) -> u64 {
    id
}
}

mod unknown_placeholder {
#[aside::cached(key = "product:<idd>")]
async fn get_product(id: u64, category: u32) -> u64 {
    id + u64::from(category)
}
}

mod tag_unknown_placeholder {
#[aside::cached(key = "p:<id>", tags = ["category:<cat>"])]
async fn get(id: u64) -> u64 {
    id
}

#[aside::invalidate(keys = ["p:<id"], tags = ["product:<product>"])]
async fn save(id: u64) {
    let _ = id;
}
}

mod tags_not_a_list {
#[aside::cached(key = "p:<id>", tags = "product:<id>")]
async fn get(id: u64) -> u64 {
    id
}

#[aside::invalidate(keys = ["p:<id>", 42])]
async fn save(id: u64) {
    let _ = id;
}
}

mod default_key_unnamed_argument {
#[aside::cached]
async fn area((w, h): (u32, u32)) -> u32 {
    w * h
}
}

mod method_without_key {
// A method's default key would leave `self` out: two tenants' repositories
// sharing one cache would read each other's entries.
struct Repo {
    cache: aside::Cache,
    tenant: String,
}

impl Repo {
    #[aside::cached(cache = self.cache)]
    async fn secret(&self, id: u64) -> String {
        format!("{}:{id}", self.tenant)
    }
}
}

fn main() {}
