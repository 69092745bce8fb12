//! N-API glue for DataplanePacketEvent (`js/events.js`). No rule lives here: every value is reduced to a
//! [`Field`] and judged by `interceptor_ebpf_core::contract::events::validate_fields`.
//!
//! The three hot entry points are raw `napi_sys` callbacks rather than `#[napi]` functions, because the
//! boundary dominates the cost of validating a small record (measured: ~30 ns per raw call against ~140 ns
//! for a `#[napi]` one, ~100 ns per property read, ~1.1 µs to build a result object property by property):
//!
//! - `checkObject(countOrKeys, ...17 values)`: the JS wrapper reads the known keys itself (cheap in JS) and
//!   passes their values as arguments, plus the object's key count. Returns the log record's empty-string
//!   mask (a number >= 0) when valid, `-1` when the key count shows keys it was not given (the wrapper then
//!   calls again with the key names so the unknown ones can be named), or the issue array.
//! - `parseJson(input, slots)`: validates one JSON text (string, Buffer or Uint8Array) and writes the typed
//!   values and the UTF-16 offsets of the strings into the caller's `Float64Array`; JS builds the object by
//!   slicing the text, which is far cheaper than creating strings through N-API. Strings that cannot be sliced
//!   (JSON escapes) come back as an array of "extra" strings.
//! - `parseNdjson(input)`: the same for a batch, returning `[slots, count, extras, errors]`.
//!
//! Every callback runs inside `catch_unwind`: a panic becomes a thrown JavaScript `Error`, never an abort
//! (`__test__/events.test.mjs` feeds hostile inputs to check this).

// napi-derive registers exports only outside `cfg(test)`, so in unit-test builds everything reached only
// from JavaScript looks unused.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use napi::bindgen_prelude::{ToNapiValue, Unknown};
use napi::{sys, Env, JsValue, ValueType};
use napi_derive::napi;

use crate::codes::js_type_name;
use crate::issues::{to_js_issues, JsIssue};
use interceptor_ebpf_core::contract::event_json::{for_each_ndjson_line, with_json_event};
use interceptor_ebpf_core::contract::events::{
    key_index, not_an_object, validate_fields, EventFields, EventView, EVENT_KEYS, KEY_COUNT,
};
use interceptor_ebpf_core::contract::hook::{Hook, Protocol};
use interceptor_ebpf_core::contract::reason_codes::DataplaneReasonCode;
use interceptor_ebpf_core::contract::validation::{Field, Issue, IssueCode, ValidationError};

/// Number of `Float64Array` slots per record written by `parseJson`/`parseNdjson`.
pub const RECORD_SLOTS: usize = 21;
/// Slot of each value within a record; strings take two slots (UTF-16 start, end), `-1` when absent and
/// `-(2 + k)` for "`extras[k]`".
mod slot {
    pub const CODE: usize = 0;
    pub const HOOK: usize = 1;
    pub const PROTOCOL: usize = 2;
    pub const DST_PORT: usize = 3;
    pub const PID: usize = 4;
    pub const UID: usize = 5;
    pub const POLICY_GENERATION: usize = 6;
    pub const CGROUP_ID: usize = 7;
    pub const MESSAGE: usize = 9;
    pub const DST_IP: usize = 11;
    pub const COMM: usize = 13;
    pub const RULE_ID: usize = 15;
    pub const WORKLOAD_ID: usize = 17;
    pub const OBSERVED_AT: usize = 19;
}

/// Value tables for the JS side, indexed by the numeric value the slots carry.
#[napi(object)]
pub struct DataplaneEventTables {
    /// `EVENT_KEYS`, in table order.
    pub keys: Vec<String>,
    /// Reason code wire string by value (index 0 unused).
    pub codes: Vec<String>,
    /// Verdict by code value.
    pub verdicts: Vec<String>,
    /// `would_block` by code value: `null` when the code carries none.
    pub would_block: Vec<Option<bool>>,
    /// Hook wire string by value (index 0 unused).
    pub hooks: Vec<String>,
    /// Protocol wire string by value (the values of `Protocol`; 0 is never one).
    pub protocols: Vec<String>,
    pub record_slots: u32,
    /// Where each value sits in a record: the one definition of the layout, read by `js/events.js`.
    pub slots: SlotLayout,
}

/// Slot index of each value in a record (strings: start; the end is the next slot).
#[napi(object)]
pub struct SlotLayout {
    pub code: u32,
    pub hook: u32,
    pub protocol: u32,
    pub dst_port: u32,
    pub pid: u32,
    pub uid: u32,
    pub policy_generation: u32,
    pub cgroup_id: u32,
    pub message: u32,
    pub dst_ip: u32,
    pub comm: u32,
    pub rule_id: u32,
    pub workload_id: u32,
    pub observed_at: u32,
}

#[napi(catch_unwind)]
pub fn dataplane_event_tables() -> DataplaneEventTables {
    let max_code = DataplaneReasonCode::ALL
        .iter()
        .map(|c| c.value() as usize)
        .max()
        .unwrap_or(0);
    let mut codes = vec![String::new(); max_code + 1];
    let mut verdicts = vec![String::new(); max_code + 1];
    let mut would_block = vec![None; max_code + 1];
    for c in DataplaneReasonCode::ALL {
        let i = c.value() as usize;
        codes[i] = c.as_str().to_owned();
        verdicts[i] = c.verdict().as_str().to_owned();
        would_block[i] = c.would_block();
    }
    let max_hook = Hook::ALL.iter().map(|h| *h as usize).max().unwrap_or(0);
    let mut hooks = vec![String::new(); max_hook + 1];
    for h in Hook::ALL {
        hooks[h as usize] = h.as_str().to_owned();
    }
    let max_protocol = Protocol::ALL.iter().map(|p| *p as usize).max().unwrap_or(0);
    let mut protocols = vec![String::new(); max_protocol + 1];
    for p in Protocol::ALL {
        protocols[p as usize] = p.as_str().to_owned();
    }
    DataplaneEventTables {
        keys: EVENT_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        codes,
        verdicts,
        would_block,
        hooks,
        protocols,
        record_slots: RECORD_SLOTS as u32,
        slots: SlotLayout {
            code: slot::CODE as u32,
            hook: slot::HOOK as u32,
            protocol: slot::PROTOCOL as u32,
            dst_port: slot::DST_PORT as u32,
            pid: slot::PID as u32,
            uid: slot::UID as u32,
            policy_generation: slot::POLICY_GENERATION as u32,
            cgroup_id: slot::CGROUP_ID as u32,
            message: slot::MESSAGE as u32,
            dst_ip: slot::DST_IP as u32,
            comm: slot::COMM as u32,
            rule_id: slot::RULE_ID as u32,
            workload_id: slot::WORKLOAD_ID as u32,
            observed_at: slot::OBSERVED_AT as u32,
        },
    }
}

/// The issue for a root value that is not an object (the wrapper routes non-objects here).
#[napi(catch_unwind)]
pub fn dataplane_event_root_issues(value: Unknown) -> napi::Result<Vec<JsIssue>> {
    let name = match value.get_type()? {
        ValueType::Object if value.is_array()? => "array",
        other => js_type_name(other),
    };
    Ok(to_js_issues(&not_an_object(name)))
}

/// Creates the raw fast-path functions; `js/events.js` calls this once per module instance (per worker).
#[napi(catch_unwind)]
pub fn dataplane_event_fast_paths(env: &Env) -> napi::Result<Unknown<'_>> {
    let env = env.raw();
    // SAFETY: `env` is the live environment of this call; every out-pointer is a valid local.
    unsafe {
        let mut obj = ptr::null_mut();
        status(sys::napi_create_object(env, &mut obj))?;
        let entries: [(&str, RawCallback); 3] = [
            ("checkObject", check_object_cb),
            ("parseJson", parse_json_cb),
            ("parseNdjson", parse_ndjson_cb),
        ];
        for (name, cb) in entries {
            let mut f = ptr::null_mut();
            status(sys::napi_create_function(
                env,
                name.as_ptr().cast(),
                name.len() as isize,
                Some(cb),
                ptr::null_mut(),
                &mut f,
            ))?;
            let mut key = ptr::null_mut();
            status(sys::napi_create_string_utf8(
                env,
                name.as_ptr().cast(),
                name.len() as isize,
                &mut key,
            ))?;
            status(sys::napi_set_property(env, obj, key, f))?;
        }
        Ok(Unknown::from_raw_unchecked(env, obj))
    }
}

type RawCallback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// A failed N-API call (its status), or an error already thrown into JavaScript.
#[derive(Debug)]
enum Fail {
    Status(sys::napi_status),
    Thrown,
}

type R<T> = Result<T, Fail>;

fn status(s: sys::napi_status) -> napi::Result<()> {
    if s == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            napi::Status::from(s),
            "N-API call failed".to_owned(),
        ))
    }
}

fn ok(s: sys::napi_status) -> R<()> {
    if s == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Fail::Status(s))
    }
}

/// Runs a raw callback body: converts failures and panics into thrown JavaScript errors, so nothing unwinds
/// into Node (which would abort the process).
///
/// # Safety
/// `env` and `info` must be the arguments Node passed to the callback.
unsafe fn guard(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    what: &str,
    body: unsafe fn(sys::napi_env, sys::napi_callback_info) -> R<sys::napi_value>,
) -> sys::napi_value {
    // SAFETY: forwarded from the caller's contract.
    let result = catch_unwind(AssertUnwindSafe(|| unsafe { body(env, info) }));
    let message = match result {
        Ok(Ok(v)) => return v,
        Ok(Err(Fail::Thrown)) => return ptr::null_mut(),
        Ok(Err(Fail::Status(s))) => format!("{what}: N-API call failed with status {s}\0"),
        Err(_) => format!("{what}: internal error (Rust panic); please report it\0"),
    };
    let mut pending = false;
    // SAFETY: `env` is live; the message is NUL-terminated above.
    unsafe {
        sys::napi_is_exception_pending(env, &mut pending);
        if !pending {
            sys::napi_throw_error(
                env,
                c"ERR_INTERCEPTOR_INTERNAL".as_ptr(),
                message.as_ptr().cast(),
            );
        }
    }
    ptr::null_mut()
}

/// Reads up to `N` arguments.
///
/// # Safety
/// `env`/`info` must come from a live callback.
unsafe fn args<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> R<[sys::napi_value; N]> {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    // SAFETY: argv has room for `argc` values; Node fills missing ones with `undefined`.
    ok(unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    })?;
    Ok(argv)
}

fn throw_type_error(env: sys::napi_env, message: &str) -> Fail {
    let msg = format!("{message}\0");
    // SAFETY: `env` is live; both strings are NUL-terminated.
    unsafe {
        sys::napi_throw_type_error(env, c"ERR_INVALID_ARG_TYPE".as_ptr(), msg.as_ptr().cast());
    }
    Fail::Thrown
}

/// # Safety
/// `env` live, `v` a value of it.
unsafe fn type_of(env: sys::napi_env, v: sys::napi_value) -> R<i32> {
    let mut t = 0;
    // SAFETY: forwarded.
    ok(unsafe { sys::napi_typeof(env, v, &mut t) })?;
    Ok(t)
}

/// Copies a JS string as UTF-8 into `buf` starting at `buf.len()`, growing it as needed; returns the range.
/// Lone surrogates come out as U+FFFD (V8's conversion): `read_input` looks for them when it sees one.
///
/// # Safety
/// `env` live, `v` a string value of it.
unsafe fn read_utf8(
    env: sys::napi_env,
    v: sys::napi_value,
    buf: &mut Vec<u8>,
) -> R<(usize, usize)> {
    let start = buf.len();
    // Try with the spare capacity first: most values are short. V8 never splits a character, so when at least
    // 4 bytes of room are left unused the whole string was copied.
    if buf.capacity() - start < 64 {
        buf.reserve(256);
    }
    loop {
        let room = buf.capacity() - start;
        let mut written = 0usize;
        // SAFETY: the pointer addresses `room` bytes of the Vec's spare capacity; Node writes at most
        // `room - 1` bytes plus a NUL, and `written` excludes the NUL.
        ok(unsafe {
            sys::napi_get_value_string_utf8(
                env,
                v,
                buf.as_mut_ptr().add(start).cast(),
                room,
                &mut written,
            )
        })?;
        if room - 1 - written >= 4 {
            // SAFETY: Node initialized `written` bytes at `start`.
            unsafe { buf.set_len(start + written) };
            return Ok((start, start + written));
        }
        let mut exact = 0usize;
        // SAFETY: a null buffer asks only for the length in bytes.
        ok(unsafe { sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut exact) })?;
        buf.reserve(exact + 8);
    }
}

/// # Safety
/// `env` live, `v` a string value of it.
unsafe fn read_utf16(env: sys::napi_env, v: sys::napi_value) -> R<Vec<u16>> {
    let mut len = 0usize;
    // SAFETY: null buffer: length query.
    ok(unsafe { sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut len) })?;
    let mut units = vec![0u16; len + 1];
    let mut written = 0usize;
    // SAFETY: `units` has `len + 1` slots (room for the terminator).
    ok(unsafe {
        sys::napi_get_value_string_utf16(env, v, units.as_mut_ptr(), units.len(), &mut written)
    })?;
    units.truncate(written);
    Ok(units)
}

/// Copies a JS string into `buf` as UTF-8 by way of its UTF-16 form; returns the range and whether it held a
/// lone surrogate (written as U+FFFD). For the short values of an event this beats
/// `napi_get_value_string_utf8` plus a search for U+FFFD: V8 copies UTF-16 without encoding (measured with
/// perf: `String::WriteUtf8` was the largest cost of the object path), and transcoding here sees surrogates
/// for free.
///
/// # Safety
/// `env` live, `v` a string value of it.
unsafe fn read_via_utf16(
    env: sys::napi_env,
    v: sys::napi_value,
    buf: &mut Vec<u8>,
) -> R<(usize, usize, bool)> {
    const INLINE: usize = 128;
    let mut inline = [0u16; INLINE];
    let mut written = 0usize;
    // SAFETY: `inline` has INLINE units; Node writes at most INLINE - 1 plus a terminator.
    ok(unsafe {
        sys::napi_get_value_string_utf16(env, v, inline.as_mut_ptr(), INLINE, &mut written)
    })?;
    let start = buf.len();
    let lone = if written < INLINE - 1 {
        push_utf16(&inline[..written], buf)
    } else {
        // Possibly truncated: read the whole string.
        let units = unsafe { read_utf16(env, v)? };
        push_utf16(&units, buf)
    };
    Ok((start, buf.len(), lone))
}

/// Appends UTF-16 `units` to `out` as UTF-8; lone surrogates become U+FFFD. Returns true if there was one.
fn push_utf16(units: &[u16], out: &mut Vec<u8>) -> bool {
    // The common case: ASCII. Written without early exits so the compiler vectorizes both loops.
    if units.iter().fold(0u16, |acc, &u| acc | u) < 0x80 {
        let start = out.len();
        out.resize(start + units.len(), 0);
        for (d, &u) in out[start..].iter_mut().zip(units) {
            // Every unit is < 0x80, so the cast keeps the value.
            *d = u as u8;
        }
        return false;
    }
    let mut lone = false;
    let mut tmp = [0u8; 4];
    for c in char::decode_utf16(units.iter().copied()) {
        let c = c.unwrap_or_else(|_| {
            lone = true;
            char::REPLACEMENT_CHARACTER
        });
        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
    }
    lone
}

/// Indexes (in UTF-16 units) of unpaired surrogates.
fn lone_surrogate_positions(units: &[u16]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if (0xD800..0xDC00).contains(&u)
            && units
                .get(i + 1)
                .is_some_and(|n| (0xDC00..0xE000).contains(n))
        {
            i += 2;
            continue;
        }
        if (0xD800..0xE000).contains(&u) {
            out.push(i);
        }
        i += 1;
    }
    out
}

fn contains_replacement_char(b: &[u8]) -> bool {
    memchr::memmem::find(b, "\u{FFFD}".as_bytes()).is_some()
}

/// A JS argument reduced to what the validator needs; strings as ranges into the shared byte buffer.
#[derive(Clone, Copy)]
enum Arg {
    Field(Field<'static>),
    Str(usize, usize),
}

/// # Safety
/// `env` live, `v` a value of it.
unsafe fn read_arg(env: sys::napi_env, v: sys::napi_value, buf: &mut Vec<u8>) -> R<(Arg, bool)> {
    // SAFETY (whole body): forwarded; every out-pointer is a valid local.
    let t = unsafe { type_of(env, v)? };
    let field = match t {
        sys::ValueType::napi_undefined => Field::Missing,
        sys::ValueType::napi_null => Field::Null,
        sys::ValueType::napi_boolean => {
            let mut b = false;
            ok(unsafe { sys::napi_get_value_bool(env, v, &mut b) })?;
            Field::Bool(b)
        }
        sys::ValueType::napi_number => {
            let mut n = 0f64;
            ok(unsafe { sys::napi_get_value_double(env, v, &mut n) })?;
            Field::Number(n)
        }
        sys::ValueType::napi_string => {
            let (a, b, ill) = unsafe { read_via_utf16(env, v, buf)? };
            return Ok((Arg::Str(a, b), ill));
        }
        sys::ValueType::napi_object => {
            let mut is_array = false;
            ok(unsafe { sys::napi_is_array(env, v, &mut is_array) })?;
            if is_array {
                Field::Array
            } else {
                Field::Object
            }
        }
        sys::ValueType::napi_function => Field::Other("function"),
        sys::ValueType::napi_symbol => Field::Other("symbol"),
        sys::ValueType::napi_bigint => Field::Other("bigint"),
        _ => Field::Other("external"),
    };
    Ok((Arg::Field(field), false))
}

thread_local! {
    /// Reused byte buffer for string arguments and JSON text; per thread, so per N-API environment.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

/// Runs `f` with the thread's scratch buffer (emptied), or a fresh one if it is somehow in use.
fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let out = f(&mut buf);
            // Do not keep a huge batch's buffer alive forever.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::with_capacity(4096);
            }
            out
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// # Safety
/// `env` live.
unsafe fn issues_value(env: sys::napi_env, err: &ValidationError) -> R<sys::napi_value> {
    // SAFETY: `env` is live; napi-rs converts the Vec into a JS array of plain objects.
    unsafe { Vec::<JsIssue>::to_napi_value(env, to_js_issues(err)) }
        .map_err(|_| Fail::Status(sys::Status::napi_generic_failure))
}

/// # Safety
/// `env` live.
unsafe fn number(env: sys::napi_env, n: f64) -> R<sys::napi_value> {
    let mut v = ptr::null_mut();
    // SAFETY: forwarded.
    ok(unsafe { sys::napi_create_double(env, n, &mut v) })?;
    Ok(v)
}

unsafe extern "C" fn check_object_cb(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: Node's arguments, forwarded.
    unsafe { guard(env, info, "checkObject", check_object) }
}

/// # Safety
/// Callback contract.
unsafe fn check_object(env: sys::napi_env, info: sys::napi_callback_info) -> R<sys::napi_value> {
    // SAFETY (whole body): `env`/`info` are this callback's; values come from `argv`.
    let argv = unsafe { args::<{ KEY_COUNT + 1 }>(env, info)? };
    with_scratch(|buf| {
        let mut read = [Arg::Field(Field::Missing); KEY_COUNT];
        let mut ill_formed = 0u32;
        let mut present = 0usize;
        for (i, slot) in read.iter_mut().enumerate() {
            let (arg, ill) = unsafe { read_arg(env, argv[i + 1], buf)? };
            if ill {
                ill_formed |= 1 << i;
            }
            if !matches!(arg, Arg::Field(Field::Missing)) {
                present += 1;
            }
            *slot = arg;
        }
        // Key names: only read when the count says there are keys we were not given.
        let mut key_names: Vec<(usize, usize)> = Vec::new();
        match unsafe { type_of(env, argv[0])? } {
            sys::ValueType::napi_number => {
                let mut n = 0f64;
                ok(unsafe { sys::napi_get_value_double(env, argv[0], &mut n) })?;
                if n != present as f64 {
                    return unsafe { number(env, -1.0) };
                }
            }
            sys::ValueType::napi_object => {
                let mut len = 0u32;
                ok(unsafe { sys::napi_get_array_length(env, argv[0], &mut len) })?;
                for i in 0..len {
                    let mut k = ptr::null_mut();
                    ok(unsafe { sys::napi_get_element(env, argv[0], i, &mut k) })?;
                    if unsafe { type_of(env, k)? } == sys::ValueType::napi_string {
                        key_names.push(unsafe { read_utf8(env, k, buf)? });
                    }
                }
            }
            _ => {
                return Err(throw_type_error(
                    env,
                    "checkObject: expected a key count or key names",
                ))
            }
        }
        let text = std::str::from_utf8(buf)
            .map_err(|_| Fail::Status(sys::Status::napi_generic_failure))?;
        let mut input = EventFields::new();
        input.ill_formed = ill_formed;
        for (field, arg) in input.fields.iter_mut().zip(read) {
            *field = match arg {
                Arg::Field(f) => f,
                Arg::Str(a, b) => Field::Str(&text[a..b]),
            };
        }
        for (a, b) in key_names {
            let k = &text[a..b];
            if key_index(k).is_none() {
                input.unknown_keys.push(k);
            }
        }
        match validate_fields(&input) {
            Ok(view) => unsafe { number(env, f64::from(view.empty_string_mask())) },
            Err(e) => unsafe { issues_value(env, &e) },
        }
    })
}

/// The bytes of a `parseJson`/`parseNdjson` input.
enum Input {
    /// A JS string, copied as UTF-8 into the scratch buffer. `lone` holds the (1-based) line numbers that
    /// contain a lone surrogate, which the UTF-8 copy cannot represent.
    Text { lone_lines: Vec<usize> },
    /// A Buffer/Uint8Array, read in place.
    Bytes(*const u8, usize),
}

/// # Safety
/// `env` live, `v` a value of it. For `Input::Bytes`, the pointer stays valid while the callback runs.
unsafe fn read_input(
    env: sys::napi_env,
    v: sys::napi_value,
    buf: &mut Vec<u8>,
    what: &str,
) -> R<Input> {
    // SAFETY (whole body): forwarded; out-pointers are locals.
    match unsafe { type_of(env, v)? } {
        sys::ValueType::napi_string => {
            let (a, b) = unsafe { read_utf8(env, v, buf)? };
            let mut lone_lines = Vec::new();
            if contains_replacement_char(&buf[a..b]) {
                let units = unsafe { read_utf16(env, v)? };
                for pos in lone_surrogate_positions(&units) {
                    let line = 1 + units[..pos]
                        .iter()
                        .filter(|&&u| u == u16::from(b'\n'))
                        .count();
                    if lone_lines.last() != Some(&line) {
                        lone_lines.push(line);
                    }
                }
            }
            Ok(Input::Text { lone_lines })
        }
        sys::ValueType::napi_object => {
            let mut is_typed = false;
            ok(unsafe { sys::napi_is_typedarray(env, v, &mut is_typed) })?;
            if is_typed {
                let mut t = 0;
                let mut len = 0usize;
                let mut data = ptr::null_mut::<c_void>();
                ok(unsafe {
                    sys::napi_get_typedarray_info(
                        env,
                        v,
                        &mut t,
                        &mut len,
                        &mut data,
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                })?;
                if t == sys::TypedarrayType::uint8_array {
                    // A detached or empty array reports a null pointer.
                    let data = if data.is_null() || len == 0 {
                        ptr::NonNull::<u8>::dangling().as_ptr()
                    } else {
                        data.cast::<u8>()
                    };
                    return Ok(Input::Bytes(data, len));
                }
            }
            Err(throw_type_error(
                env,
                &format!("{what}: expected a string, Buffer or Uint8Array"),
            ))
        }
        _ => Err(throw_type_error(
            env,
            &format!("{what}: expected a string, Buffer or Uint8Array"),
        )),
    }
}

/// Converts byte offsets within valid UTF-8 to UTF-16 offsets.
fn utf16_len(b: &[u8]) -> usize {
    // Every character has one non-continuation byte; 4-byte characters are surrogate pairs in UTF-16.
    b.iter().filter(|&&c| (c & 0xC0) != 0x80).count() + b.iter().filter(|&&c| c >= 0xF0).count()
}

/// Writes one validated record into `out` (RECORD_SLOTS values). `base` is the record's position in the whole
/// input (bytes and UTF-16 units); strings outside `line` (unescaped copies) go to `extras`.
struct SlotWriter<'x> {
    extras: &'x mut Vec<String>,
    /// False when the JS side cannot slice (Buffer input that is not entirely valid UTF-8).
    sliceable: bool,
}

impl SlotWriter<'_> {
    fn write(
        &mut self,
        out: &mut [f64],
        line: &[u8],
        base16: usize,
        ascii: bool,
        v: &EventView<'_>,
    ) {
        let num = |x: Option<u64>| x.map_or(-1.0, |n| n as f64);
        out[slot::CODE] = f64::from(v.reason_code.value());
        out[slot::HOOK] = v.hook.map_or(0.0, |h| f64::from(h as u8));
        out[slot::PROTOCOL] = v.protocol.map_or(0.0, |p| f64::from(p as u8));
        out[slot::DST_PORT] = num(v.dst_port.map(u64::from));
        out[slot::PID] = num(v.pid.map(u64::from));
        out[slot::UID] = num(v.uid.map(u64::from));
        out[slot::POLICY_GENERATION] = num(v.policy_generation);
        let range = line.as_ptr_range();
        let strings = [
            (slot::CGROUP_ID, v.cgroup_id.map(|(s, _)| s)),
            (slot::MESSAGE, v.message),
            (slot::DST_IP, v.dst_ip.map(|(s, _)| s)),
            (slot::COMM, v.comm),
            (slot::RULE_ID, v.rule_id),
            (slot::WORKLOAD_ID, v.workload_id),
            (slot::OBSERVED_AT, v.observed_at.map(|(s, _)| s)),
        ];
        for (at, s) in strings {
            let (a, b) = match s {
                None => (-1.0, -1.0),
                Some(s) if self.sliceable && range.contains(&s.as_ptr()) => {
                    // Borrowed from the input: compute its offsets instead of copying it.
                    let start = s.as_ptr() as usize - line.as_ptr() as usize;
                    let (a, b) = if ascii {
                        (start, start + s.len())
                    } else {
                        let a = utf16_len(&line[..start]);
                        (a, a + utf16_len(s.as_bytes()))
                    };
                    ((base16 + a) as f64, (base16 + b) as f64)
                }
                Some(s) => {
                    self.extras.push(s.to_owned());
                    (-(self.extras.len() as f64) - 1.0, 0.0)
                }
            };
            out[at] = a;
            out[at + 1] = b;
        }
    }
}

unsafe extern "C" fn parse_json_cb(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: Node's arguments, forwarded.
    unsafe { guard(env, info, "parseJson", parse_json) }
}

/// # Safety
/// Callback contract.
unsafe fn parse_json(env: sys::napi_env, info: sys::napi_callback_info) -> R<sys::napi_value> {
    // SAFETY (whole body): `env`/`info` are this callback's; typed-array memory stays valid during the call
    // because nothing here runs JavaScript.
    let argv = unsafe { args::<2>(env, info)? };
    let mut t = 0;
    let mut len = 0usize;
    let mut data = ptr::null_mut::<c_void>();
    let mut is_typed = false;
    ok(unsafe { sys::napi_is_typedarray(env, argv[1], &mut is_typed) })?;
    if is_typed {
        ok(unsafe {
            sys::napi_get_typedarray_info(
                env,
                argv[1],
                &mut t,
                &mut len,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        })?;
    }
    if !is_typed || t != sys::TypedarrayType::float64_array || len < RECORD_SLOTS || data.is_null()
    {
        return Err(throw_type_error(
            env,
            "parseJson: expected a Float64Array of at least RECORD_SLOTS",
        ));
    }
    // SAFETY: checked above: a live Float64Array of `len` elements, not aliased by anything in this call.
    let slots = unsafe { std::slice::from_raw_parts_mut(data.cast::<f64>(), len) };
    with_scratch(|buf| {
        let input = unsafe { read_input(env, argv[0], buf, "parseJsonDataplanePacketEvent")? };
        let (bytes, lone): (&[u8], bool) = match input {
            Input::Text { lone_lines } => (&buf[..], !lone_lines.is_empty()),
            Input::Bytes(p, n) => {
                // The input must not be a view of the slots we are about to write.
                let (s0, s1) = (slots.as_ptr() as usize, slots.as_ptr() as usize + len * 8);
                if (p as usize) < s1 && s0 < p as usize + n {
                    return Err(throw_type_error(
                        env,
                        "parseJson: the input overlaps the slot array",
                    ));
                }
                // SAFETY: the typed array's memory, valid for the call and disjoint from `slots`.
                (unsafe { std::slice::from_raw_parts(p, n) }, false)
            }
        };
        let result = if lone {
            Err(lone_surrogate_error())
        } else {
            let mut extras = Vec::new();
            let ascii = bytes.is_ascii();
            with_json_event(bytes, |view| {
                SlotWriter {
                    extras: &mut extras,
                    sliceable: true,
                }
                .write(slots, bytes, 0, ascii, view);
            })
            .map(|()| extras)
        };
        match result {
            Ok(extras) if extras.is_empty() => {
                let mut u = ptr::null_mut();
                ok(unsafe { sys::napi_get_undefined(env, &mut u) })?;
                Ok(u)
            }
            Ok(extras) => unsafe { Vec::<String>::to_napi_value(env, extras) }
                .map_err(|_| Fail::Status(sys::Status::napi_generic_failure)),
            Err(e) => {
                slots[slot::CODE] = 0.0;
                unsafe { issues_value(env, &e) }
            }
        }
    })
}

fn lone_surrogate_error() -> ValidationError {
    ValidationError::single(Issue::new(
        Vec::new(),
        IssueCode::InvalidJson,
        "invalid JSON: the text contains a lone UTF-16 surrogate, which has no UTF-8 form",
    ))
}

/// One rejected NDJSON line, for JavaScript.
#[napi(object)]
pub struct NdjsonLineIssues {
    pub line: u32,
    pub issues: Vec<JsIssue>,
}

unsafe extern "C" fn parse_ndjson_cb(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: Node's arguments, forwarded.
    unsafe { guard(env, info, "parseNdjson", parse_ndjson) }
}

/// # Safety
/// Callback contract.
unsafe fn parse_ndjson(env: sys::napi_env, info: sys::napi_callback_info) -> R<sys::napi_value> {
    // SAFETY (whole body): as `parse_json`.
    let argv = unsafe { args::<1>(env, info)? };
    with_scratch(|buf| {
        let input = unsafe { read_input(env, argv[0], buf, "parseDataplanePacketEventNdjson")? };
        let (bytes, lone_lines, sliceable): (&[u8], Vec<usize>, bool) = match input {
            Input::Text { lone_lines } => (&buf[..], lone_lines, true),
            Input::Bytes(p, n) => {
                // SAFETY: the typed array's memory, valid for the call.
                let b = unsafe { std::slice::from_raw_parts(p, n) };
                // JS decodes a Buffer with U+FFFD substitutions we would have to mimic to keep offsets right;
                // for invalid UTF-8, return copies instead of offsets.
                (b, Vec::new(), std::str::from_utf8(b).is_ok())
            }
        };
        let ascii = bytes.is_ascii();
        let mut slots: Vec<f64> = Vec::new();
        let mut extras: Vec<String> = Vec::new();
        let mut errors: Vec<NdjsonLineIssues> = Vec::new();
        let mut count = 0u32;
        // UTF-16 position of the current line start, advanced incrementally (lines arrive in order).
        let (mut pos8, mut pos16) = (0usize, 0usize);
        for_each_ndjson_line(bytes, |line_no, line| {
            let start8 = line.as_ptr() as usize - bytes.as_ptr() as usize;
            if !ascii && sliceable {
                pos16 += utf16_len(&bytes[pos8..start8]);
            } else {
                pos16 = start8;
            }
            pos8 = start8;
            let result = if lone_lines.binary_search(&line_no).is_ok() {
                Err(lone_surrogate_error())
            } else {
                let base = slots.len();
                slots.resize(base + RECORD_SLOTS, 0.0);
                let mut w = SlotWriter {
                    extras: &mut extras,
                    sliceable,
                };
                let r = with_json_event(line, |view| {
                    w.write(&mut slots[base..], line, pos16, ascii, view)
                });
                if r.is_err() {
                    slots.truncate(base);
                }
                r
            };
            match result {
                Ok(()) => count += 1,
                Err(e) => errors.push(NdjsonLineIssues {
                    line: u32::try_from(line_no).unwrap_or(u32::MAX),
                    issues: to_js_issues(&e),
                }),
            }
        });
        unsafe { ndjson_result(env, &slots, count, extras, errors) }
    })
}

/// Builds `[Float64Array slots, count, extras | undefined, errors | undefined]`.
///
/// # Safety
/// `env` live.
unsafe fn ndjson_result(
    env: sys::napi_env,
    slots: &[f64],
    count: u32,
    extras: Vec<String>,
    errors: Vec<NdjsonLineIssues>,
) -> R<sys::napi_value> {
    let generic = |_| Fail::Status(sys::Status::napi_generic_failure);
    // SAFETY (whole body): `env` is live; the ArrayBuffer is created with exactly the bytes copied into it.
    unsafe {
        let bytes = std::mem::size_of_val(slots);
        let mut data = ptr::null_mut::<c_void>();
        let mut ab = ptr::null_mut();
        ok(sys::napi_create_arraybuffer(env, bytes, &mut data, &mut ab))?;
        if bytes > 0 {
            ptr::copy_nonoverlapping(slots.as_ptr().cast::<u8>(), data.cast::<u8>(), bytes);
        }
        let mut typed = ptr::null_mut();
        ok(sys::napi_create_typedarray(
            env,
            sys::TypedarrayType::float64_array,
            slots.len(),
            ab,
            0,
            &mut typed,
        ))?;
        let mut undefined = ptr::null_mut();
        ok(sys::napi_get_undefined(env, &mut undefined))?;
        let extras = if extras.is_empty() {
            undefined
        } else {
            Vec::<String>::to_napi_value(env, extras).map_err(generic)?
        };
        let errors = if errors.is_empty() {
            undefined
        } else {
            Vec::<NdjsonLineIssues>::to_napi_value(env, errors).map_err(generic)?
        };
        let mut arr = ptr::null_mut();
        ok(sys::napi_create_array_with_length(env, 4, &mut arr))?;
        let count = number(env, f64::from(count))?;
        for (i, v) in [typed, count, extras, errors].into_iter().enumerate() {
            ok(sys::napi_set_element(env, arr, i as u32, v))?;
        }
        Ok(arr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_offsets_count_surrogate_pairs() {
        assert_eq!(utf16_len("abc".as_bytes()), 3);
        assert_eq!(utf16_len("é".as_bytes()), 1);
        assert_eq!(utf16_len("€".as_bytes()), 1);
        assert_eq!(utf16_len("😀".as_bytes()), 2);
        assert_eq!(utf16_len("a😀é".as_bytes()), "a😀é".encode_utf16().count());
    }

    #[test]
    fn utf16_transcoding_matches_std_and_flags_lone_surrogates() {
        for s in ["", "ascii only", "é", "😀 x", "mixed ü and 😀 and \u{7f}"] {
            let units: Vec<u16> = s.encode_utf16().collect();
            let mut out = b"prefix".to_vec();
            assert!(!push_utf16(&units, &mut out), "{s}");
            assert_eq!(&out[6..], s.as_bytes());
        }
        let mut out = Vec::new();
        assert!(push_utf16(&[0x61, 0xD800, 0x62], &mut out));
        assert_eq!(out, "a\u{FFFD}b".as_bytes());
    }

    #[test]
    fn lone_surrogates_are_found() {
        assert_eq!(
            lone_surrogate_positions(&[0x61, 0xD83D, 0xDE00]),
            Vec::<usize>::new()
        );
        assert_eq!(lone_surrogate_positions(&[0xD800]), [0]);
        assert_eq!(
            lone_surrogate_positions(&[0x61, 0xDC00, 0xD800, 0x61]),
            [1, 2]
        );
        assert_eq!(lone_surrogate_positions(&[0xD800, 0xD800, 0xDC00]), [0]);
    }

    #[test]
    fn slot_layout_covers_every_key_once() {
        // 7 scalar slots + 7 strings of two slots; code_namespace/verdict/would_block derive from the code.
        assert_eq!(RECORD_SLOTS, 7 + 7 * 2);
        assert_eq!(slot::OBSERVED_AT + 2, RECORD_SLOTS);
    }
}
