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
    assert!(
        info.stack_pointer.is_some(),
        "rustc output names __stack_pointer"
    );
    assert!(info
        .update_methods
        .contains("<ic-cdk internal> timer_executor"));
    assert!(
        info.has_global_timer
            && info.has_init
            && info.has_pre_upgrade
            && info.has_post_upgrade
            && info.has_inspect_message
    );
    let rewritten = engine::wasm::rewrite(test_wasm()).unwrap();
    let again = engine::wasm::validate(&rewritten).unwrap();
    assert_eq!(again.update_methods, info.update_methods);
}

/// A data-first layout (the stack above static data, clang's default): memory under the stack pointer is not dead,
/// so the engine must snapshot all of it.
#[test]
fn stack_pointer_shortcut_only_for_stack_first_layouts() {
    let module = |data_offset: u8| {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        section(&mut m, 5, vec![1, 0, 1]);
        // global 0: mut i32 = 1024 (stack pointer); global 1: i32 = 2048 (__heap_base)
        section(
            &mut m,
            6,
            vec![
                2, 0x7f, 1, 0x41, 0x80, 0x08, 0x0b, 0x7f, 0, 0x41, 0x80, 0x10, 0x0b,
            ],
        );
        let mut exp = vec![1];
        name(&mut exp, "__heap_base");
        exp.extend([3, 1]);
        section(&mut m, 7, exp);
        // one active data segment at `data_offset` (as a 2-byte LEB so that values ≥ 64 encode correctly)
        section(
            &mut m,
            11,
            vec![1, 0, 0x41, data_offset | 0x80, 0x00, 0x0b, 1, 0xaa],
        );
        m
    };
    assert!(
        engine::wasm::validate(&module(16))
            .unwrap()
            .stack_pointer
            .is_none(),
        "data below the stack"
    );
    let mut stack_first = module(16);
    // Move the data segment above the stack: offset 1024 + 16.
    let n = stack_first.len();
    stack_first.truncate(n - 10);
    section(
        &mut stack_first,
        11,
        vec![1, 0, 0x41, 0x90, 0x08, 0x0b, 1, 0xaa],
    );
    assert!(engine::wasm::validate(&stack_first)
        .unwrap()
        .stack_pointer
        .is_some());
}
