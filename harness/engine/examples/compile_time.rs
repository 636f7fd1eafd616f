//! Times compiling a canister module: `cargo run -p engine --example compile_time -- <module.wasm>`.
fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: compile_time <module.wasm>");
    let wasm = std::fs::read(&path).expect("read module");
    let t = std::time::Instant::now();
    let info = engine::wasm::validate(&wasm).expect("valid");
    println!("shadow stack pointer: {:?}", info.stack_pointer);
    let v = t.elapsed();
    let t = std::time::Instant::now();
    let _ = engine::wasm::rewrite(&wasm).expect("rewrite");
    let r = t.elapsed();
    let mut e = engine::Engine::new(engine::EngineConfig::default());
    let t = std::time::Instant::now();
    e.compile(&wasm).expect("compile");
    println!(
        "compile {} bytes: {:?} (validate {v:?}, rewrite {r:?})",
        wasm.len(),
        t.elapsed()
    );
}
