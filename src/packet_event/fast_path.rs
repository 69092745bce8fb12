//! The three raw callbacks of the event fast path (`checkObject`, `parseJson`, `parseNdjson`; the contract
//! and the measurements behind it are in the parent module's documentation). They are ordinary safe Rust over
//! [`crate::napi_raw`]; the only `unsafe` left here borrows typed-array memory, which is sound only while no
//! JavaScript runs, and each borrow says why that holds.

use std::cell::RefCell;

use napi::sys;

use super::{slot, NdjsonLineIssues, RECORD_SLOTS};
use crate::issues::to_js_issues;
use crate::napi_raw::{run_callback, Fail, Scope, TypedArray, Value, R};
#[cfg(not(target_family = "wasm"))]
use crate::utf16::contains_replacement_char;
use crate::utf16::{lone_surrogate_positions, utf16_len};
use interceptor_ebpf_core::contract::events::json::{for_each_ndjson_line, with_json_event};
use interceptor_ebpf_core::contract::events::{
    key_index, validate_fields, EventFields, EventView, KEY_COUNT,
};
use interceptor_ebpf_core::contract::validation::{Field, Issue, IssueCode, ValidationError};

/// # Safety
/// Called by Node only, with the env and info of this call.
pub(super) unsafe extern "C" fn check_object_cb(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: Node passes this callback its own live env and info, forwarded unchanged.
    unsafe { run_callback::<{ KEY_COUNT + 1 }>(env, info, "checkObject", check_object) }
}

/// # Safety
/// Called by Node only, with the env and info of this call.
pub(super) unsafe extern "C" fn parse_json_cb(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: Node passes this callback its own live env and info, forwarded unchanged.
    unsafe { run_callback::<2>(env, info, "parseJson", parse_json) }
}

/// # Safety
/// Called by Node only, with the env and info of this call.
pub(super) unsafe extern "C" fn parse_ndjson_cb(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: Node passes this callback its own live env and info, forwarded unchanged.
    unsafe { run_callback::<1>(env, info, "parseNdjson", parse_ndjson) }
}

/// A JS argument reduced to what the validator needs; strings as ranges into the shared byte buffer.
#[derive(Clone, Copy)]
enum Arg {
    Field(Field<'static>),
    Str(usize, usize),
}

fn read_arg<'s>(cx: Scope<'s>, v: Value<'s>, buf: &mut Vec<u8>) -> R<(Arg, bool)> {
    let field = match cx.type_of(v)? {
        sys::ValueType::napi_undefined => Field::Missing,
        sys::ValueType::napi_null => Field::Null,
        sys::ValueType::napi_boolean => Field::Bool(cx.get_bool(v)?),
        sys::ValueType::napi_number => Field::Number(cx.get_double(v)?),
        sys::ValueType::napi_string => {
            let (a, b, ill) = cx.read_via_utf16(v, buf)?;
            return Ok((Arg::Str(a, b), ill));
        }
        sys::ValueType::napi_object => {
            if cx.is_array(v)? {
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

fn issues_value<'s>(cx: Scope<'s>, err: &ValidationError) -> R<Value<'s>> {
    cx.convert(to_js_issues(err))
}

fn check_object<'s>(cx: Scope<'s>, argv: [Value<'s>; KEY_COUNT + 1]) -> R<Value<'s>> {
    with_scratch(|buf| {
        let mut read = [Arg::Field(Field::Missing); KEY_COUNT];
        let mut ill_formed = 0u32;
        let mut present = 0usize;
        for (i, slot) in read.iter_mut().enumerate() {
            let (arg, ill) = read_arg(cx, argv[i + 1], buf)?;
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
        match cx.type_of(argv[0])? {
            sys::ValueType::napi_number => {
                if cx.get_double(argv[0])? != present as f64 {
                    return cx.double(-1.0);
                }
            }
            sys::ValueType::napi_object => {
                for i in 0..cx.array_length(argv[0])? {
                    let k = cx.element(argv[0], i)?;
                    if cx.type_of(k)? == sys::ValueType::napi_string {
                        key_names.push(cx.read_utf8(k, buf)?);
                    }
                }
            }
            _ => {
                return Err(cx.throw_type_error("checkObject: expected a key count or key names"));
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
            Ok(view) => cx.double(f64::from(view.empty_string_mask())),
            Err(e) => issues_value(cx, &e),
        }
    })
}

/// The bytes of a `parseJson`/`parseNdjson` input.
enum Input<'s> {
    /// A JS string, copied as UTF-8 into the scratch buffer. `lone` holds the (1-based) line numbers that
    /// contain a lone surrogate, which the UTF-8 copy cannot represent.
    Text { lone_lines: Vec<usize> },
    /// A Buffer/Uint8Array, read in place.
    Bytes(TypedArray<'s>),
}

fn read_input<'s>(cx: Scope<'s>, v: Value<'s>, buf: &mut Vec<u8>, what: &str) -> R<Input<'s>> {
    match cx.type_of(v)? {
        sys::ValueType::napi_string => {
            // Natively V8 writes a lone surrogate as U+FFFD, so the UTF-8 copy tells whether to look for one.
            let (a, b) = cx.read_utf8(v, buf)?;
            #[cfg(not(target_family = "wasm"))]
            let maybe_lone = contains_replacement_char(&buf[a..b]);
            // emnapi's UTF-8 copy (the WebAssembly build) instead pairs a lone surrogate with whatever unit
            // follows it: valid UTF-8 of another text. Every surrogate, paired or not, comes out as a 4-byte
            // sequence there, so only a text with one is read again through UTF-16, which tells them apart
            // (emnapi's UTF-16 copy is slow, about 45 ns a unit; the UTF-8 one is a plain loop).
            #[cfg(target_family = "wasm")]
            let maybe_lone = if buf[a..b].iter().any(|&c| c >= 0xF0) {
                buf.truncate(a);
                cx.read_via_utf16(v, buf)?.2
            } else {
                false
            };
            let mut lone_lines = Vec::new();
            if maybe_lone {
                let units = cx.read_utf16(v)?;
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
            match cx.typed_array(v)? {
                Some(t) if t.kind == sys::TypedarrayType::uint8_array => Ok(Input::Bytes(t)),
                _ => Err(cx
                    .throw_type_error(&format!("{what}: expected a string, Buffer or Uint8Array"))),
            }
        }
        _ => Err(cx.throw_type_error(&format!("{what}: expected a string, Buffer or Uint8Array"))),
    }
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
            (slot::DNS_NAME, v.dns_name),
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

fn parse_json<'s>(cx: Scope<'s>, argv: [Value<'s>; 2]) -> R<Value<'s>> {
    let mut slots_array = match cx.typed_array(argv[1])? {
        Some(t) if t.kind == sys::TypedarrayType::float64_array && t.len >= RECORD_SLOTS => t,
        _ => {
            return Err(
                cx.throw_type_error("parseJson: expected a Float64Array of at least RECORD_SLOTS")
            )
        }
    };
    let (slots_buffer, slots_offset) = slots_array.buffer();
    let slots_start = slots_array.addr();
    let slots_end = slots_start + slots_array.len * 8;
    // SAFETY: `slots_array` is a Float64Array argument of this call (kind checked above). No JavaScript runs
    // before the last use of `slots`: everything up to the final write below is Rust and N-API reads, and the
    // result objects (which can reach user setters) are created only after it. The only other view this call
    // takes is the input, refused below when it overlaps these bytes.
    let Some(slots) = (unsafe { slots_array.as_f64_mut() }) else {
        return Err(Fail::Status(sys::Status::napi_generic_failure));
    };
    with_scratch(|buf| {
        let input = read_input(cx, argv[0], buf, "parseJsonDataplanePacketEvent")?;
        let (bytes, lone): (&[u8], bool) = match &input {
            Input::Text { lone_lines } => (&buf[..], !lone_lines.is_empty()),
            Input::Bytes(array) => {
                // The input must not be a view of the slots we are about to write.
                let (p, n) = (array.addr(), array.len);
                if p < slots_end && slots_start < p + n {
                    return Err(cx.throw_type_error("parseJson: the input overlaps the slot array"));
                }
                // SAFETY: a Uint8Array argument of this call, disjoint from `slots` (checked just above);
                // `bytes` is last used inside `with_json_event` below, before anything that can run
                // JavaScript.
                match unsafe { array.as_bytes() } {
                    Some(b) => (b, false),
                    None => return Err(Fail::Status(sys::Status::napi_generic_failure)),
                }
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
        if result.is_err() {
            slots[slot::CODE] = 0.0;
        }
        // The last write to `slots` is above; under WebAssembly they reach the JavaScript array only now.
        cx.publish_writes(slots_buffer, slots_offset, RECORD_SLOTS * 8)?;
        match result {
            Ok(extras) if extras.is_empty() => cx.undefined(),
            Ok(extras) => cx.convert(extras),
            Err(e) => issues_value(cx, &e),
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

fn parse_ndjson<'s>(cx: Scope<'s>, argv: [Value<'s>; 1]) -> R<Value<'s>> {
    with_scratch(|buf| {
        let mut input = read_input(cx, argv[0], buf, "parseDataplanePacketEventNdjson")?;
        let (bytes, lone_lines, sliceable): (&[u8], Vec<usize>, bool) = match &mut input {
            Input::Text { lone_lines } => (&buf[..], std::mem::take(lone_lines), true),
            Input::Bytes(array) => {
                // SAFETY: a Uint8Array argument of this call, and nothing writes to it here; `bytes` is last
                // used in the line loop below, which only parses and builds Rust values, before
                // `ndjson_result` creates any JavaScript object.
                let Some(b) = (unsafe { array.as_bytes() }) else {
                    return Err(Fail::Status(sys::Status::napi_generic_failure));
                };
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
        ndjson_result(cx, &slots, count, extras, errors)
    })
}

/// Builds `[Float64Array slots, count, extras | undefined, errors | undefined]`.
fn ndjson_result<'s>(
    cx: Scope<'s>,
    slots: &[f64],
    count: u32,
    extras: Vec<String>,
    errors: Vec<NdjsonLineIssues>,
) -> R<Value<'s>> {
    let typed = cx.float64_array(slots)?;
    let undefined = cx.undefined()?;
    let extras = if extras.is_empty() {
        undefined
    } else {
        cx.convert(extras)?
    };
    let errors = if errors.is_empty() {
        undefined
    } else {
        cx.convert(errors)?
    };
    let arr = cx.array_with_length(4)?;
    let count = cx.double(f64::from(count))?;
    for (i, v) in [typed, count, extras, errors].into_iter().enumerate() {
        cx.set_element(arr, i as u32, v)?;
    }
    Ok(arr)
}
