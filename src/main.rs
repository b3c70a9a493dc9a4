//! `septa`: the appliance binary (composition root).

fn main() {}
