//! Shared by the benchmarks: the value they cache, a product of about 1 KB
//! as JSON.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub price_cents: u64,
    pub category: String,
    pub brand: String,
    pub rating: f32,
    pub reviews: u32,
    pub tags: Vec<String>,
}

pub fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("Product {id}"),
        description: "A sturdy, well-made thing that does what it says. ".repeat(14),
        price_cents: 1999 + id,
        category: "home & garden".into(),
        brand: "Acme".into(),
        rating: 4.5,
        reviews: 1234,
        tags: vec!["sale".into(), "new".into(), "popular".into()],
    }
}
