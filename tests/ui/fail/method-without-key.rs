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

fn main() {}
