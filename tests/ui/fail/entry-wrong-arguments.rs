// The entry takes the arguments the key is made of, by reference.
struct Repo {
    tenant: String,
}

impl Repo {
    #[aside::cached(key = "<self.tenant>:price:<id>:<currency>")]
    async fn price(&self, id: u64, currency: &str) -> u32 {
        id as u32 + currency.len() as u32 + self.tenant.len() as u32
    }

    #[aside::invalidate(entries = [self.price(id)])]
    async fn set_price(&self, id: u64) {
        let _ = id;
    }
}

fn main() {}
