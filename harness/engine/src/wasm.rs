//! Canister module handling: decompress, validate like the IC (spec §2), rewrite so the host can reach the
//! function table, the memory and every mutable global, and compile (cached by module hash).

use std::collections::{BTreeMap, BTreeSet};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures};

/// Name under which the rewritten module exports table 0.
pub const TABLE_EXPORT: &str = "__engine_table";
/// Name under which the rewritten module exports memory 0.
pub const MEMORY_EXPORT: &str = "__engine_memory";
/// Prefix of the exports added for mutable globals.
pub const GLOBAL_EXPORT_PREFIX: &str = "__engine_global_";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum T {
    I32,
    I64,
}

/// `(name, params, results)` of every `ic0` import the engine links (wasm32 signatures).
pub const IC0_IMPORTS: &[(&str, &[T], &[T])] = {
    use T::*;
    &[
        ("msg_arg_data_size", &[], &[I32]),
        ("msg_arg_data_copy", &[I32, I32, I32], &[]),
        ("msg_caller_size", &[], &[I32]),
        ("msg_caller_copy", &[I32, I32, I32], &[]),
        ("msg_caller_info_data_size", &[], &[I32]),
        ("msg_caller_info_data_copy", &[I32, I32, I32], &[]),
        ("msg_caller_info_signer_size", &[], &[I32]),
        ("msg_caller_info_signer_copy", &[I32, I32, I32], &[]),
        ("msg_reject_code", &[], &[I32]),
        ("msg_reject_msg_size", &[], &[I32]),
        ("msg_reject_msg_copy", &[I32, I32, I32], &[]),
        ("msg_deadline", &[], &[I64]),
        ("msg_reply_data_append", &[I32, I32], &[]),
        ("msg_reply", &[], &[]),
        ("msg_reject", &[I32, I32], &[]),
        ("msg_cycles_available128", &[I32], &[]),
        ("msg_cycles_refunded128", &[I32], &[]),
        ("msg_cycles_accept128", &[I64, I64, I32], &[]),
        ("cycles_burn128", &[I64, I64, I32], &[]),
        ("canister_self_size", &[], &[I32]),
        ("canister_self_copy", &[I32, I32, I32], &[]),
        ("canister_cycle_balance128", &[I32], &[]),
        ("canister_liquid_cycle_balance128", &[I32], &[]),
        ("canister_status", &[], &[I32]),
        ("canister_version", &[], &[I64]),
        ("subnet_self_size", &[], &[I32]),
        ("subnet_self_copy", &[I32, I32, I32], &[]),
        ("subnet_self_node_count", &[], &[I32]),
        ("msg_method_name_size", &[], &[I32]),
        ("msg_method_name_copy", &[I32, I32, I32], &[]),
        ("accept_message", &[], &[]),
        ("call_new", &[I32, I32, I32, I32, I32, I32, I32, I32], &[]),
        ("call_on_cleanup", &[I32, I32], &[]),
        ("call_data_append", &[I32, I32], &[]),
        ("call_with_best_effort_response", &[I32], &[]),
        ("call_cycles_add128", &[I64, I64], &[]),
        ("call_perform", &[], &[I32]),
        ("stable64_size", &[], &[I64]),
        ("stable64_grow", &[I64], &[I64]),
        ("stable64_write", &[I64, I64, I64], &[]),
        ("stable64_read", &[I64, I64, I64], &[]),
        ("root_key_size", &[], &[I32]),
        ("root_key_copy", &[I32, I32, I32], &[]),
        ("certified_data_set", &[I32, I32], &[]),
        ("data_certificate_present", &[], &[I32]),
        ("data_certificate_size", &[], &[I32]),
        ("data_certificate_copy", &[I32, I32, I32], &[]),
        ("time", &[], &[I64]),
        ("global_timer_set", &[I64], &[I64]),
        ("performance_counter", &[I32], &[I64]),
        ("is_controller", &[I32, I32], &[I32]),
        ("in_replicated_execution", &[], &[I32]),
        ("cost_call", &[I64, I64, I32], &[]),
        ("cost_create_canister", &[I32], &[]),
        ("cost_http_request", &[I64, I64, I32], &[]),
        ("cost_http_request_v2", &[I32, I32, I32], &[]),
        ("cost_sign_with_ecdsa", &[I32, I32, I32, I32], &[I32]),
        ("cost_sign_with_schnorr", &[I32, I32, I32, I32], &[I32]),
        ("cost_vetkd_derive_key", &[I32, I32, I32, I32], &[I32]),
        ("env_var_count", &[], &[I32]),
        ("env_var_name_size", &[I32], &[I32]),
        ("env_var_name_copy", &[I32, I32, I32, I32], &[]),
        ("env_var_name_exists", &[I32, I32], &[I32]),
        ("env_var_value_size", &[I32, I32], &[I32]),
        ("env_var_value_copy", &[I32, I32, I32, I32, I32], &[]),
        ("debug_print", &[I32, I32], &[]),
        ("trap", &[I32, I32], &[]),
        // Legacy wasm32-only imports.
        ("msg_cycles_available", &[], &[I64]),
        ("msg_cycles_refunded", &[], &[I64]),
        ("msg_cycles_accept", &[I64], &[I64]),
        ("canister_cycle_balance", &[], &[I64]),
        ("call_cycles_add", &[I64], &[]),
        ("stable_size", &[], &[I32]),
        ("stable_grow", &[I32], &[I32]),
        ("stable_write", &[I32, I32, I32], &[]),
        ("stable_read", &[I32, I32, I32], &[]),
    ]
};

/// What the engine needs to know about a validated module.
#[derive(Clone, Debug, Default)]
pub struct ModuleInfo {
    pub update_methods: BTreeSet<String>,
    pub query_methods: BTreeSet<String>,
    pub composite_query_methods: BTreeSet<String>,
    pub has_init: bool,
    pub has_pre_upgrade: bool,
    pub has_post_upgrade: bool,
    pub has_heartbeat: bool,
    pub has_global_timer: bool,
    pub has_inspect_message: bool,
    pub has_on_low_wasm_memory: bool,
    pub has_table: bool,
    /// Export names of the mutable globals (after rewriting).
    pub mutable_globals: Vec<String>,
    /// `icp:public` / `icp:private` custom sections: name -> (public, content).
    pub metadata: BTreeMap<String, (bool, Vec<u8>)>,
    pub custom_sections_size: u64,
    pub enhanced_orthogonal_persistence: bool,
    /// Export name of the global named `__stack_pointer` in the name section (rustc/LLVM output), if any.
    pub stack_pointer: Option<String>,
}

fn invalid(msg: impl Into<String>) -> String {
    msg.into()
}

/// Decompress (gzip) if needed. Errors are IC0505 texts.
pub fn decode_module(bytes: &[u8], max: usize) -> Result<Vec<u8>, String> {
    if bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
        use std::io::Read;
        let mut out = Vec::new();
        let d = flate2::read::GzDecoder::new(bytes);
        d.take(max as u64 + 1).read_to_end(&mut out).map_err(|e| {
            format!("Failed to decode wasm module: unsupported compressed (gzip) format: {e}")
        })?;
        if out.len() > max {
            return Err(format!(
                "Wasm module size exceeds the maximum of {max} bytes"
            ));
        }
        Ok(out)
    } else if bytes.starts_with(b"\0asm") {
        if bytes.len() > max {
            return Err(format!(
                "Wasm module size {} exceeds the maximum of {max} bytes",
                bytes.len()
            ));
        }
        Ok(bytes.to_vec())
    } else {
        Err(
            "Failed to decode wasm module: unsupported format (expected a raw wasm module or gzip)"
                .into(),
        )
    }
}

pub fn features() -> WasmFeatures {
    WasmFeatures::WASM2
}

fn to_t(v: ValType) -> Option<T> {
    match v {
        ValType::I32 => Some(T::I32),
        ValType::I64 => Some(T::I64),
        _ => None,
    }
}

/// Validate the module as the IC does at install and collect its exports. Errors are IC0505 texts.
pub fn validate(wasm: &[u8]) -> Result<ModuleInfo, String> {
    let mut validator = Validator::new_with_features(features());
    validator
        .validate_all(wasm)
        .map_err(|e| format!("Wasm module has an invalid format: {e}"))?;
    let mut info = ModuleInfo::default();
    let mut func_types: Vec<(Vec<ValType>, Vec<ValType>)> = vec![];
    let mut func_type_idx: Vec<u32> = vec![];
    let mut n_globals = 0u32;
    let mut n_tables = 0u32;
    let mut mutable_globals: Vec<u32> = vec![];
    let mut exports: Vec<(String, ExternalKind, u32)> = vec![];
    let mut icp_names = BTreeSet::new();
    let mut icp_total = 0usize;
    let mut icp_count = 0usize;
    let mut code_size = 0usize;
    let mut stack_pointer_index: Option<u32> = None;
    let mut first_global_mut_i32 = false;
    // Initial values of i32 globals defined by `i32.const`, and the lowest active data segment offset.
    let mut global_init: Vec<Option<u32>> = vec![];
    let mut lowest_data: Option<u32> = None;
    let mut data_offsets_known = true;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("Wasm module has an invalid format: {e}"))?;
        match payload {
            Payload::TypeSection(r) => {
                for rec in r.into_iter_err_on_gc_types() {
                    let ft = rec.map_err(|e| e.to_string())?;
                    func_types.push((ft.params().to_vec(), ft.results().to_vec()));
                }
            }
            Payload::ImportSection(r) => {
                for imp in r.into_imports() {
                    let imp = imp.map_err(|e| e.to_string())?;
                    if imp.module != "ic0" {
                        return Err(invalid(format!(
                            "Wasm module has an invalid import section. Module imports function '{}' from '{}' that is not exported by the runtime.",
                            imp.name, imp.module
                        )));
                    }
                    let TypeRef::Func(ti) = imp.ty else {
                        return Err(invalid(format!(
                            "Wasm module has an invalid import section. Only function imports are allowed, but '{}' from 'ic0' is not a function.",
                            imp.name
                        )));
                    };
                    let Some(&(_, params, results)) =
                        IC0_IMPORTS.iter().find(|(n, _, _)| *n == imp.name)
                    else {
                        return Err(invalid(format!(
                            "Wasm module has an invalid import section. Module imports function '{}' from 'ic0' that is not exported by the runtime.",
                            imp.name
                        )));
                    };
                    let (p, r) = &func_types[ti as usize];
                    let p: Vec<_> = p.iter().map(|v| to_t(*v)).collect();
                    let r: Vec<_> = r.iter().map(|v| to_t(*v)).collect();
                    let ep: Vec<_> = params.iter().map(|t| Some(*t)).collect();
                    let er: Vec<_> = results.iter().map(|t| Some(*t)).collect();
                    if p != ep || r != er {
                        return Err(invalid(format!(
                            "Wasm module has an invalid import section. Module imports function '{}' from 'ic0' that has an invalid signature.",
                            imp.name
                        )));
                    }
                    func_type_idx.push(ti);
                }
            }
            Payload::FunctionSection(r) => {
                for f in r {
                    func_type_idx.push(f.map_err(|e| e.to_string())?);
                }
            }
            Payload::TableSection(r) => n_tables += r.count(),
            Payload::MemorySection(r) => {
                for m in r {
                    let m = m.map_err(|e| e.to_string())?;
                    if m.memory64 {
                        return Err(invalid("Wasm module has an invalid memory section: wasm64 memories are not supported by this engine."));
                    }
                }
            }
            Payload::GlobalSection(r) => {
                for g in r {
                    let g = g.map_err(|e| e.to_string())?;
                    if g.ty.mutable {
                        mutable_globals.push(n_globals);
                    }
                    if n_globals == 0 {
                        first_global_mut_i32 = g.ty.mutable && g.ty.content_type == ValType::I32;
                    }
                    global_init.push(const_i32(&g.init_expr));
                    n_globals += 1;
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(|e| e.to_string())?;
                    exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            Payload::CodeSectionStart { size, .. } => code_size = size as usize,
            Payload::DataSection(r) => {
                for d in r {
                    let d = d.map_err(|e| e.to_string())?;
                    if let wasmparser::DataKind::Active { offset_expr, .. } = d.kind {
                        match const_i32(&offset_expr) {
                            Some(o) => lowest_data = Some(lowest_data.map_or(o, |l| l.min(o))),
                            None => data_offsets_known = false,
                        }
                    }
                }
            }
            Payload::CustomSection(c) => {
                if let wasmparser::KnownCustom::Name(reader) = c.as_known() {
                    for n in reader.into_iter().flatten() {
                        if let wasmparser::Name::Global(map) = n {
                            for naming in map.into_iter().flatten() {
                                if naming.name == "__stack_pointer" {
                                    stack_pointer_index = Some(naming.index);
                                }
                            }
                        }
                    }
                }
                let name = c.name();
                info.custom_sections_size += c.data().len() as u64 + name.len() as u64;
                if let Some(rest) = name.strip_prefix("icp:") {
                    let (public, n) = if let Some(n) = rest.strip_prefix("public ") {
                        (true, n)
                    } else if let Some(n) = rest.strip_prefix("private ") {
                        (false, n)
                    } else {
                        return Err(invalid(format!(
                            "Wasm module has an invalid custom section. Invalid custom section: Custom section '{name}' has no public/private scope defined."
                        )));
                    };
                    if !icp_names.insert(n.to_string()) {
                        return Err(invalid(format!(
                            "Wasm module has an invalid custom section. Invalid custom section: Duplicate custom section named '{n}'."
                        )));
                    }
                    icp_count += 1;
                    icp_total += c.data().len() + n.len();
                    if n == "enhanced-orthogonal-persistence" {
                        info.enhanced_orthogonal_persistence = true;
                    }
                    info.metadata
                        .insert(n.to_string(), (public, c.data().to_vec()));
                }
            }
            _ => {}
        }
    }
    if icp_count > 16 {
        return Err(invalid("Wasm module has an invalid custom section. Invalid custom sections: too many custom sections (at most 16)."));
    }
    if icp_total > 1 << 20 {
        return Err(invalid("Wasm module has an invalid custom section. Invalid custom sections: total size exceeds 1 MiB."));
    }
    if code_size > 10 * 1024 * 1024 {
        return Err(invalid(
            "Wasm module code section size exceeds the maximum of 10 MiB.",
        ));
    }
    if func_type_idx.len() > 50_000 {
        return Err(invalid(format!(
            "Wasm module has an invalid function section. Wasm module defined {} functions which exceeds the maximum number allowed 50000.",
            func_type_idx.len()
        )));
    }
    if n_globals > 1000 {
        return Err(invalid(format!(
            "Wasm module has an invalid global section. Wasm module defined {n_globals} globals which exceeds the maximum number allowed 1000."
        )));
    }
    info.has_table = n_tables > 0;
    let mut all_methods = BTreeSet::new();
    let mut name_len = 0usize;
    for (name, kind, index) in &exports {
        if !name.starts_with("canister_") {
            continue;
        }
        if *kind != ExternalKind::Func {
            return Err(invalid(format!("Wasm module has an invalid export section. Exported symbol '{name}' is not a function.")));
        }
        let ti = func_type_idx.get(*index as usize).copied().unwrap_or(0);
        let (p, r) = &func_types[ti as usize];
        if !p.is_empty() || !r.is_empty() {
            return Err(invalid(format!(
                "Wasm module has an invalid function signature. Expected return type [] and parameters [] for exported function '{name}', got [{r:?}] [{p:?}]."
            )));
        }
        let mut method = |set: &mut BTreeSet<String>, m: &str| -> Result<(), String> {
            if !all_methods.insert(m.to_string()) {
                return Err(invalid(format!(
                    "Wasm module has an invalid export section. Duplicate function '{m}' exported multiple times with different call types: update, query, or composite_query."
                )));
            }
            name_len += m.len();
            set.insert(m.to_string());
            Ok(())
        };
        match name.as_str() {
            "canister_init" => info.has_init = true,
            "canister_pre_upgrade" => info.has_pre_upgrade = true,
            "canister_post_upgrade" => info.has_post_upgrade = true,
            "canister_heartbeat" => info.has_heartbeat = true,
            "canister_global_timer" => info.has_global_timer = true,
            "canister_inspect_message" => info.has_inspect_message = true,
            "canister_on_low_wasm_memory" => info.has_on_low_wasm_memory = true,
            _ => {
                if let Some(m) = name.strip_prefix("canister_update ") {
                    method(&mut info.update_methods, m)?;
                } else if let Some(m) = name.strip_prefix("canister_query ") {
                    method(&mut info.query_methods, m)?;
                } else if let Some(m) = name.strip_prefix("canister_composite_query ") {
                    method(&mut info.composite_query_methods, m)?;
                } else {
                    return Err(invalid(format!(
                        "Wasm module has an invalid export section. Exporting reserved function '{name}' with \"canister_\" prefix"
                    )));
                }
            }
        }
    }
    if all_methods.len() > 1000 {
        return Err(invalid(format!(
            "Wasm module has an invalid export section. The number of exported functions called `canister_update <name>`, `canister_query <name>`, or `canister_composite_query <name>` is {} which exceeds the maximum number allowed 1000.",
            all_methods.len()
        )));
    }
    if name_len > 20_000 {
        return Err(invalid(format!(
            "Wasm module has an invalid export section. The sum of `<name>` lengths in exported functions called `canister_update <name>`, `canister_query <name>`, or `canister_composite_query <name>` is {name_len} bytes which exceeds the maximum allowed 20000."
        )));
    }
    info.mutable_globals = mutable_globals
        .iter()
        .map(|g| format!("{GLOBAL_EXPORT_PREFIX}{g}"))
        .collect();
    // Without a name section (stripped builds), lld's layout: global 0 is `__stack_pointer` (a mutable i32) in
    // modules that export `__heap_base` / `__data_end`.
    let lld = exports
        .iter()
        .any(|(n, k, _)| *k == ExternalKind::Global && (n == "__heap_base" || n == "__data_end"));
    if stack_pointer_index.is_none() && lld && first_global_mut_i32 {
        stack_pointer_index = Some(0);
    }
    // Only a stack placed below all data (rustc's `--stack-first` layout) makes the memory under the stack
    // pointer dead between executions.
    let stack_first = |i: &u32| match global_init.get(*i as usize).copied().flatten() {
        Some(sp) => data_offsets_known && lowest_data.is_none_or(|d| d >= sp),
        None => false,
    };
    info.stack_pointer = stack_pointer_index
        .filter(|i| mutable_globals.contains(i))
        .filter(stack_first)
        .map(|i| format!("{GLOBAL_EXPORT_PREFIX}{i}"));
    Ok(info)
}

/// The value of a constant expression that is a single `i32.const`.
fn const_i32(e: &wasmparser::ConstExpr<'_>) -> Option<u32> {
    let mut r = e.get_operators_reader();
    match r.read().ok()? {
        wasmparser::Operator::I32Const { value } => match r.read().ok()? {
            wasmparser::Operator::End => Some(value as u32),
            _ => None,
        },
        _ => None,
    }
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
}

fn read_leb(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut result = 0u64;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(result);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Order of known section ids in a module.
fn section_rank(id: u8) -> u32 {
    match id {
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 5,
        13 => 6,
        6 => 7,
        7 => 8,
        8 => 9,
        9 => 10,
        12 => 11,
        10 => 12,
        11 => 13,
        _ => 100,
    }
}

/// Rewrite a validated module: export table 0, memory 0 and every mutable global under engine names.
pub fn rewrite(wasm: &[u8]) -> Result<Vec<u8>, String> {
    // Gather what exists.
    let mut existing: Vec<(String, ExternalKind, u32)> = vec![];
    let mut has_table = false;
    let mut has_memory = false;
    let mut mutable_globals = vec![];
    let mut n_globals = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::TableSection(r) => has_table |= r.count() > 0,
            Payload::MemorySection(r) => has_memory |= r.count() > 0,
            Payload::GlobalSection(r) => {
                for g in r {
                    if g.map_err(|e| e.to_string())?.ty.mutable {
                        mutable_globals.push(n_globals);
                    }
                    n_globals += 1;
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(|e| e.to_string())?;
                    existing.push((e.name.to_string(), e.kind, e.index));
                }
            }
            _ => {}
        }
    }
    let mut section = Vec::new();
    let mut count = 0u64;
    let mut entry = |name: &str, kind: u8, idx: u32, out: &mut Vec<u8>| {
        leb(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        out.push(kind);
        leb(out, idx as u64);
        count += 1;
    };
    for (name, kind, idx) in &existing {
        let k = match kind {
            ExternalKind::Func | ExternalKind::FuncExact => 0,
            ExternalKind::Table => 1,
            ExternalKind::Memory => 2,
            ExternalKind::Global => 3,
            ExternalKind::Tag => 4,
        };
        entry(name, k, *idx, &mut section);
    }
    if has_table {
        entry(TABLE_EXPORT, 1, 0, &mut section);
    }
    if has_memory {
        entry(MEMORY_EXPORT, 2, 0, &mut section);
    }
    for g in &mutable_globals {
        entry(&format!("{GLOBAL_EXPORT_PREFIX}{g}"), 3, *g, &mut section);
    }
    let mut body = Vec::new();
    leb(&mut body, count);
    body.extend_from_slice(&section);
    let mut new_section = vec![7u8];
    leb(&mut new_section, body.len() as u64);
    new_section.extend_from_slice(&body);

    let mut out = Vec::with_capacity(wasm.len() + new_section.len());
    out.extend_from_slice(&wasm[..8]);
    let mut pos = 8;
    let mut emitted = false;
    while pos < wasm.len() {
        let start = pos;
        let id = wasm[pos];
        pos += 1;
        let size = read_leb(wasm, &mut pos).ok_or("bad section size")? as usize;
        let end = pos + size;
        if end > wasm.len() {
            return Err("bad section size".into());
        }
        if id == 7 {
            out.extend_from_slice(&new_section);
            emitted = true;
        } else {
            if !emitted && id != 0 && section_rank(id) > section_rank(7) {
                out.extend_from_slice(&new_section);
                emitted = true;
            }
            out.extend_from_slice(&wasm[start..end]);
        }
        pos = end;
    }
    if !emitted {
        out.extend_from_slice(&new_section);
    }
    Ok(out)
}
