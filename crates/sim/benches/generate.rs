//! Generation benchmark (written later).

fn main() {}
