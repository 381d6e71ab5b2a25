// The bundled templates (`templates/`) are compiled into the crate: rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=../templates");
}
