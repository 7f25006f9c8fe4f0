#[aside::cached(key = "touch:<id>")]
async fn touch(id: u64) {
    let _ = id;
}

fn main() {}
