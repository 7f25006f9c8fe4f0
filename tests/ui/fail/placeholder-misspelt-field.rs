struct User {
    id: u64,
}

#[aside::cached(key = "user:<user.idd>")]
async fn user_name(user: &User) -> String {
    user.id.to_string()
}

fn main() {}
