mod common;
use candid::{Encode, Principal};
use common::*;


#[test]
fn install_update_query_roundtrip() {
    let (mut e, c) = setup();
    assert_eq!(c.to_text(), "lxzze-o7777-77777-aaaaa-cai");
    assert_eq!(update::<u64>(&mut e, c, "inc", none()).unwrap(), 1);
    assert_eq!(update::<u64>(&mut e, c, "inc", none()).unwrap(), 2);
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 2);
    // Query state changes are discarded.
    assert_eq!(query::<u64>(&mut e, c, "query_inc", none()).unwrap(), 3);
    assert_eq!(query::<u64>(&mut e, c, "get", none()).unwrap(), 2);
    let _ = Principal::anonymous();
    let _ = Encode!().unwrap();
}

#[test]
fn module_rewrite_exposes_table_memory_globals_and_finds_stack_pointer() {
    let info = engine::wasm::validate(test_wasm()).unwrap();
    assert!(info.has_table);
    assert!(!info.mutable_globals.is_empty());
    assert!(info.stack_pointer.is_some(), "rustc output names __stack_pointer");
    assert!(info.update_methods.contains("<ic-cdk internal> timer_executor"));
    assert!(info.has_global_timer && info.has_init && info.has_pre_upgrade && info.has_post_upgrade && info.has_inspect_message);
    let rewritten = engine::wasm::rewrite(test_wasm()).unwrap();
    let again = engine::wasm::validate(&rewritten).unwrap();
    assert_eq!(again.update_methods, info.update_methods);
}
