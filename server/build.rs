//! Rebuilds the server when a migration changes: `embed_migrations!` reads the folders
//! at compile time, and cargo does not know to look there.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
