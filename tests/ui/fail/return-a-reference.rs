#[aside::cached(key = "name:<id>")]
async fn name(id: u64) -> &'static str {
    if id == 0 { "zero" } else { "many" }
}

fn main() {}
