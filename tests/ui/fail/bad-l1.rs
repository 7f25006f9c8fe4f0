#[aside::cached(key = "n:<n>", l1 = "soon")]
async fn plain(n: u32) -> u32 {
    n
}

fn main() {}
