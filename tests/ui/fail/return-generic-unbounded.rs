// A generic cached type needs one bound, which the error names.
#[aside::cached(key = "default:<name>")]
async fn default_of<T: Default>(name: &str) -> T {
    let _ = name;
    T::default()
}

fn main() {}
