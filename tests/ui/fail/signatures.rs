// Functions the attributes cannot cache or write through: each module is one signature, and the .stderr has the one error each must give.

mod cache_put_mut_self {
struct Repo {
    writes: u64,
}

impl Repo {
    #[aside::cache_put(key = "p:<id>")]
    async fn save(&mut self, id: u64) -> u64 {
        self.writes += 1;
        id
    }
}
}

mod invalidate_not_async {
#[aside::invalidate(keys = ["p:<id>"])]
fn save(id: u64) {
    let _ = id;
}
}

mod invalidate_self_by_value {
struct Repo;

impl Repo {
    #[aside::invalidate(keys = ["p:<id>"])]
    async fn save(self, id: u64) {
        let _ = id;
    }
}
}

mod mut_reference_argument {
#[aside::cached(key = "p:<id>")]
async fn get(id: u64, seen: &mut Vec<u64>) -> u64 {
    seen.push(id);
    id
}
}

mod mut_self {
struct Repo {
    calls: u64,
}

impl Repo {
    #[aside::cached(key = "p:<id>")]
    async fn get(&mut self, id: u64) -> u64 {
        self.calls += 1;
        id
    }
}
}

mod no_return_type {
#[aside::cached(key = "touch:<id>")]
async fn touch(id: u64) {
    let _ = id;
}
}

mod not_async {
#[aside::cached(key = "p:<id>")]
fn get(id: u64) -> u64 {
    id
}
}

mod return_a_reference {
#[aside::cached(key = "name:<id>")]
async fn name(id: u64) -> &'static str {
    if id == 0 { "zero" } else { "many" }
}
}

mod self_by_value {
struct Repo;

impl Repo {
    #[aside::cached(key = "p:<id>")]
    async fn get(self, id: u64) -> u64 {
        id
    }
}
}

fn main() {}
