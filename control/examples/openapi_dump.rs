//! Writes the API's OpenAPI document (the one served at `/api/v1/openapi.json`) to a file or
//! stdout, so the console's TypeScript types are generated without a running server.
//!
//! `cargo run -p septa-control --example openapi_dump -- [OUT.json]`

use septa_control::api::openapi::ApiDoc;
use utoipa::OpenApi;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let json = ApiDoc::openapi().to_pretty_json()?;
    match std::env::args().nth(1) {
        Some(path) => std::fs::write(path, json + "\n")?,
        None => println!("{json}"),
    }
    Ok(())
}
