struct Filter {
    limit: u32,
}

#[aside::cached(key = "search:<filter>")]
async fn search(filter: &Filter) -> Vec<u32> {
    (0..filter.limit).collect()
}

fn main() {}
