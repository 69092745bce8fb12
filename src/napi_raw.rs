//! Thin safe wrappers over the raw `napi_sys` calls that the hand-written event callbacks make
//! (`src/packet_event/fast_path.rs`). The callbacks bypass `#[napi]` because the boundary dominates their cost;
//! this module keeps the `unsafe` of doing so in one place, each block with the reason it is sound.
//!
//! Soundness rests on two types:
//!
//! - [`Scope<'s>`] is the environment of one running N-API call. It is made once per call, unsafely, from the
//!   `napi_env` Node passed in ([`run_callback`] for a raw callback, [`Scope::new`] inside a `#[napi]`
//!   function); `'s` is bound to that call and the type is neither `Send` nor `Sync`, so it is only used on
//!   the JavaScript thread while the env is live.
//! - [`Value<'s>`] is a handle Node gave out inside that scope (an argument, an array element, a value
//!   created here). Handles live until the call returns, so every `Value<'s>` is valid for every call made
//!   through the same `Scope<'s>`; both lifetimes are invariant, so a handle cannot be moved to another call.
//!
//! Given a live env and live handles, an N-API call is sound as long as its out-pointers are valid, which
//! each wrapper provides with locals. A value of the wrong type is not undefined behaviour: Node returns a
//! status, which becomes [`Fail::Status`].
//!
//! What no wrapper can guarantee is the lifetime of typed-array memory: JavaScript can detach an
//! `ArrayBuffer`. Borrowing it ([`TypedArray::as_bytes`], [`TypedArray::as_f64_mut`]) therefore stays
//! `unsafe`, with the contract that no JavaScript runs while the borrow is alive.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use crate::utf16::push_utf16;

/// emnapi's own additions to N-API (the WebAssembly build), from its `emnapi.h`; they resolve against the
/// emnapi runtime the module is instantiated with, like every other N-API import there.
#[cfg(target_family = "wasm")]
mod emnapi {
    use napi::sys;

    extern "C" {
        /// Copies `length` bytes at `byte_offset` of an `ArrayBuffer` or view between JavaScript and the
        /// mirror in linear memory (`js_to_wasm = false`: mirror to JavaScript).
        pub fn emnapi_sync_memory(
            env: sys::napi_env,
            js_to_wasm: bool,
            arraybuffer_or_view: *mut sys::napi_value,
            byte_offset: usize,
            length: usize,
        ) -> sys::napi_status;
    }
}

/// The signature Node calls a raw callback with.
pub type RawCallback =
    unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// A failed N-API call (its status), or an error already thrown into JavaScript.
#[derive(Debug)]
pub enum Fail {
    Status(sys::napi_status),
    Thrown,
}

pub type R<T> = Result<T, Fail>;

fn ok(s: sys::napi_status) -> R<()> {
    if s == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Fail::Status(s))
    }
}

impl From<Fail> for napi::Error {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Status(s) => {
                napi::Error::new(napi::Status::from(s), "N-API call failed".to_owned())
            }
            Fail::Thrown => napi::Error::new(
                napi::Status::PendingException,
                "a JavaScript exception is pending".to_owned(),
            ),
        }
    }
}

/// Invariant in `'s`: neither a scope nor a handle can be stretched to another call's lifetime.
type Invariant<'s> = PhantomData<fn(&'s ()) -> &'s ()>;

/// The environment of one running N-API call (see the module documentation).
#[derive(Clone, Copy)]
pub struct Scope<'s> {
    env: sys::napi_env,
    _call: Invariant<'s>,
}

/// A JavaScript value handle of the call that `'s` names.
#[derive(Clone, Copy)]
pub struct Value<'s> {
    raw: sys::napi_value,
    _call: Invariant<'s>,
}

impl<'s> Value<'s> {
    fn new(raw: sys::napi_value) -> Self {
        Value {
            raw,
            _call: PhantomData,
        }
    }

    pub fn raw(self) -> sys::napi_value {
        self.raw
    }
}

/// What `napi_get_typedarray_info` reports about a typed array of the current call.
pub struct TypedArray<'s> {
    pub kind: sys::napi_typedarray_type,
    /// Number of elements.
    pub len: usize,
    /// First element; never null (a detached or empty array reports null, replaced by a dangling pointer).
    data: NonNull<c_void>,
    /// The `ArrayBuffer` behind the array and where the array starts in it.
    buffer: Value<'s>,
    byte_offset: usize,
    _call: Invariant<'s>,
}

impl<'s> TypedArray<'s> {
    /// The `ArrayBuffer` behind the array, and the array's byte offset in it.
    pub fn buffer(&self) -> (Value<'s>, usize) {
        (self.buffer, self.byte_offset)
    }

    /// Address of the first element, for overlap checks.
    pub fn addr(&self) -> usize {
        self.data.as_ptr() as usize
    }

    /// The elements of a `Uint8Array` (or `Buffer`); `None` for other kinds.
    ///
    /// # Safety
    /// No JavaScript may run while the slice is alive (JavaScript could detach or transfer the buffer), and
    /// no `&mut` to the same memory may exist meanwhile.
    pub unsafe fn as_bytes(&self) -> Option<&[u8]> {
        if self.kind != sys::TypedarrayType::uint8_array {
            return None;
        }
        // SAFETY: Node reported `len` one-byte elements at `data`, kept alive by the array handle for this
        // call; an empty or detached array has `len == 0` with a dangling, aligned pointer. The caller
        // guarantees the memory is neither detached nor mutably aliased while the slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<u8>(), self.len) })
    }

    /// The elements of a `Float64Array`; `None` for other kinds.
    ///
    /// # Safety
    /// No JavaScript may run while the slice is alive, and no other reference to the same memory (another
    /// typed array over the same buffer) may be used meanwhile.
    pub unsafe fn as_f64_mut(&mut self) -> Option<&mut [f64]> {
        if self.kind != sys::TypedarrayType::float64_array {
            return None;
        }
        // SAFETY: Node reported `len` f64 elements at `data`; a Float64Array's byte offset is a multiple of 8,
        // so the pointer is aligned. The handle keeps the buffer alive for this call and the caller guarantees
        // it is neither detached nor aliased while the slice lives.
        Some(unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr().cast::<f64>(), self.len) })
    }
}

/// Runs the body of a raw callback with its scope and its first `N` arguments (missing ones are
/// `undefined`). Failures and panics become thrown JavaScript errors, so nothing unwinds into Node (which
/// would abort the process).
///
/// # Safety
/// `env` and `info` must be the arguments Node passed to the callback that is running now.
pub unsafe fn run_callback<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    what: &str,
    body: for<'s> fn(Scope<'s>, [Value<'s>; N]) -> R<Value<'s>>,
) -> sys::napi_value {
    // SAFETY: the caller passes the env of the running callback, and `scope` does not leave this function.
    let scope = unsafe { Scope::new(env) };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut argv = [ptr::null_mut(); N];
        let mut argc = N;
        // SAFETY: `env`/`info` are the running callback's (caller contract); `argv` has room for `argc`
        // handles, and Node fills the ones the caller did not pass with `undefined`; this/data are not asked.
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
        body(scope, argv.map(Value::new)).map(Value::raw)
    }));
    let message = match result {
        Ok(Ok(v)) => return v,
        Ok(Err(Fail::Thrown)) => return ptr::null_mut(),
        Ok(Err(Fail::Status(s))) => format!("{what}: N-API call failed with status {s}\0"),
        Err(_) => format!("{what}: internal error (Rust panic); please report it\0"),
    };
    let mut pending = false;
    // SAFETY: `env` is live (caller contract) and `pending` is a valid out-pointer. Should the query fail,
    // `pending` stays false and the error below is thrown.
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if !pending {
        // SAFETY: `env` is live; the code is a C string literal and `message` ends with the NUL added above.
        unsafe {
            sys::napi_throw_error(
                env,
                c"ERR_INTERCEPTOR_INTERNAL".as_ptr(),
                message.as_ptr().cast(),
            )
        };
    }
    ptr::null_mut()
}

impl<'s> Scope<'s> {
    /// # Safety
    /// `env` must be the environment Node passed to the N-API call running now on this thread, and the
    /// scope (with every [`Value`] it hands out) must not be used after that call returns.
    pub unsafe fn new(env: sys::napi_env) -> Self {
        Scope {
            env,
            _call: PhantomData,
        }
    }

    pub fn raw(self) -> sys::napi_env {
        self.env
    }

    /// Throws a `TypeError` with code `ERR_INVALID_ARG_TYPE`; returns the [`Fail`] to propagate.
    pub fn throw_type_error(self, message: &str) -> Fail {
        let msg = format!("{message}\0");
        // SAFETY: the env is live (scope invariant); the code is a C string literal and `msg` ends with NUL.
        unsafe {
            sys::napi_throw_type_error(
                self.env,
                c"ERR_INVALID_ARG_TYPE".as_ptr(),
                msg.as_ptr().cast(),
            )
        };
        Fail::Thrown
    }

    /// `napi_typeof`: one of the `sys::ValueType` constants.
    pub fn type_of(self, v: Value<'s>) -> R<sys::napi_valuetype> {
        let mut t = 0;
        // SAFETY: live env and handle (scope invariant); `t` is a valid out-pointer.
        ok(unsafe { sys::napi_typeof(self.env, v.raw, &mut t) })?;
        Ok(t)
    }

    pub fn get_bool(self, v: Value<'s>) -> R<bool> {
        let mut b = false;
        // SAFETY: live env and handle; `b` is a valid out-pointer (a non-boolean yields a status, not UB).
        ok(unsafe { sys::napi_get_value_bool(self.env, v.raw, &mut b) })?;
        Ok(b)
    }

    pub fn get_double(self, v: Value<'s>) -> R<f64> {
        let mut n = 0f64;
        // SAFETY: live env and handle; `n` is a valid out-pointer (a non-number yields a status, not UB).
        ok(unsafe { sys::napi_get_value_double(self.env, v.raw, &mut n) })?;
        Ok(n)
    }

    pub fn is_array(self, v: Value<'s>) -> R<bool> {
        let mut b = false;
        // SAFETY: live env and handle; `b` is a valid out-pointer.
        ok(unsafe { sys::napi_is_array(self.env, v.raw, &mut b) })?;
        Ok(b)
    }

    pub fn array_length(self, v: Value<'s>) -> R<u32> {
        let mut len = 0u32;
        // SAFETY: live env and handle; `len` is a valid out-pointer (a non-array yields a status).
        ok(unsafe { sys::napi_get_array_length(self.env, v.raw, &mut len) })?;
        Ok(len)
    }

    pub fn element(self, array: Value<'s>, i: u32) -> R<Value<'s>> {
        let mut v = ptr::null_mut();
        // SAFETY: live env and handle; `v` is a valid out-pointer and receives a handle of this call.
        ok(unsafe { sys::napi_get_element(self.env, array.raw, i, &mut v) })?;
        Ok(Value::new(v))
    }

    /// `Some` with the array's kind, length and data when `v` is a typed array, `None` otherwise.
    pub fn typed_array(self, v: Value<'s>) -> R<Option<TypedArray<'s>>> {
        let mut is_typed = false;
        // SAFETY: live env and handle; `is_typed` is a valid out-pointer.
        ok(unsafe { sys::napi_is_typedarray(self.env, v.raw, &mut is_typed) })?;
        if !is_typed {
            return Ok(None);
        }
        let mut kind = 0;
        let mut len = 0usize;
        let mut data = ptr::null_mut::<c_void>();
        let mut buffer = ptr::null_mut();
        let mut byte_offset = 0usize;
        // SAFETY: live env and a handle just checked to be a typed array; kind/len/data/buffer/byte_offset are
        // valid out-pointers, and the buffer handle belongs to this call.
        ok(unsafe {
            sys::napi_get_typedarray_info(
                self.env,
                v.raw,
                &mut kind,
                &mut len,
                &mut data,
                &mut buffer,
                &mut byte_offset,
            )
        })?;
        // A detached or empty array reports a null pointer: keep slices built from it well-formed.
        let (data, len) = match NonNull::new(data) {
            Some(p) if len > 0 => (p, len),
            _ => (NonNull::<f64>::dangling().cast::<c_void>(), 0),
        };
        Ok(Some(TypedArray {
            kind,
            len,
            data,
            buffer: Value::new(buffer),
            byte_offset,
            _call: PhantomData,
        }))
    }

    /// Copies a string as UTF-8 into `buf` starting at `buf.len()`, growing it as needed; returns the range.
    /// Lone surrogates come out as U+FFFD (V8's conversion).
    pub fn read_utf8(self, v: Value<'s>, buf: &mut Vec<u8>) -> R<(usize, usize)> {
        let start = buf.len();
        // Try with the spare capacity first: most values are short. V8 never splits a character, so when at
        // least 4 bytes of room are left unused the whole string was copied.
        if buf.capacity() - start < 64 {
            buf.reserve(256);
        }
        loop {
            let room = buf.capacity() - start;
            let mut written = 0usize;
            // SAFETY: live env and handle; the pointer addresses the `room` bytes of the Vec's spare capacity
            // (`room >= 64`), Node writes at most `room - 1` bytes plus a NUL there, and `written` is a valid
            // out-pointer.
            ok(unsafe {
                sys::napi_get_value_string_utf8(
                    self.env,
                    v.raw,
                    buf.as_mut_ptr().add(start).cast(),
                    room,
                    &mut written,
                )
            })?;
            if room - 1 - written >= 4 {
                // SAFETY: Node initialized `written` bytes at `start` (within capacity), and they are UTF-8
                // bytes, valid `u8`s.
                unsafe { buf.set_len(start + written) };
                return Ok((start, start + written));
            }
            let mut exact = 0usize;
            // SAFETY: live env and handle; a null buffer asks only for the length, written to `exact`.
            ok(unsafe {
                sys::napi_get_value_string_utf8(self.env, v.raw, ptr::null_mut(), 0, &mut exact)
            })?;
            buf.reserve(exact + 8);
        }
    }

    /// The string's UTF-16 code units (lone surrogates kept).
    pub fn read_utf16(self, v: Value<'s>) -> R<Vec<u16>> {
        let mut len = 0usize;
        // SAFETY: live env and handle; a null buffer asks only for the length, written to `len`.
        ok(unsafe {
            sys::napi_get_value_string_utf16(self.env, v.raw, ptr::null_mut(), 0, &mut len)
        })?;
        let mut units = vec![0u16; len + 1];
        let mut written = 0usize;
        // SAFETY: live env and handle; `units` holds `units.len()` initialized slots (room for the string and
        // its terminator) and `written` is a valid out-pointer.
        ok(unsafe {
            sys::napi_get_value_string_utf16(
                self.env,
                v.raw,
                units.as_mut_ptr(),
                units.len(),
                &mut written,
            )
        })?;
        units.truncate(written);
        Ok(units)
    }

    /// Copies a string into `buf` as UTF-8 by way of its UTF-16 form; returns the range and whether it held
    /// a lone surrogate (written as U+FFFD). For the short values of an event this beats
    /// `napi_get_value_string_utf8` plus a search for U+FFFD: V8 copies UTF-16 without encoding (measured
    /// with perf: `String::WriteUtf8` was the largest cost of the object path), and transcoding here sees
    /// surrogates for free.
    pub fn read_via_utf16(self, v: Value<'s>, buf: &mut Vec<u8>) -> R<(usize, usize, bool)> {
        const INLINE: usize = 128;
        let mut inline = [0u16; INLINE];
        let mut written = 0usize;
        // SAFETY: live env and handle; `inline` has INLINE initialized units, Node writes at most INLINE - 1
        // plus a terminator, and `written` is a valid out-pointer.
        ok(unsafe {
            sys::napi_get_value_string_utf16(
                self.env,
                v.raw,
                inline.as_mut_ptr(),
                INLINE,
                &mut written,
            )
        })?;
        let start = buf.len();
        let lone = if written < INLINE - 1 {
            push_utf16(&inline[..written], buf)
        } else {
            // Possibly truncated: read the whole string.
            push_utf16(&self.read_utf16(v)?, buf)
        };
        Ok((start, buf.len(), lone))
    }

    pub fn undefined(self) -> R<Value<'s>> {
        let mut v = ptr::null_mut();
        // SAFETY: live env; `v` is a valid out-pointer.
        ok(unsafe { sys::napi_get_undefined(self.env, &mut v) })?;
        Ok(Value::new(v))
    }

    pub fn double(self, n: f64) -> R<Value<'s>> {
        let mut v = ptr::null_mut();
        // SAFETY: live env; `v` is a valid out-pointer.
        ok(unsafe { sys::napi_create_double(self.env, n, &mut v) })?;
        Ok(Value::new(v))
    }

    pub fn object(self) -> R<Value<'s>> {
        let mut v = ptr::null_mut();
        // SAFETY: live env; `v` is a valid out-pointer.
        ok(unsafe { sys::napi_create_object(self.env, &mut v) })?;
        Ok(Value::new(v))
    }

    /// A JavaScript function named `name` that calls `cb` (with no data pointer).
    pub fn function(self, name: &str, cb: RawCallback) -> R<Value<'s>> {
        let mut v = ptr::null_mut();
        // SAFETY: live env; `name` is `name.len()` bytes of UTF-8 (its length is passed, so no NUL is needed);
        // `cb` has the signature Node calls and needs no data; `v` is a valid out-pointer.
        ok(unsafe {
            sys::napi_create_function(
                self.env,
                name.as_ptr().cast(),
                name.len() as isize,
                Some(cb),
                ptr::null_mut(),
                &mut v,
            )
        })?;
        Ok(Value::new(v))
    }

    /// `object[name] = value`.
    pub fn set_named(self, object: Value<'s>, name: &str, value: Value<'s>) -> R<()> {
        let mut key = ptr::null_mut();
        // SAFETY: live env; `name` is `name.len()` bytes of UTF-8 with its length passed; `key` is a valid
        // out-pointer.
        ok(unsafe {
            sys::napi_create_string_utf8(
                self.env,
                name.as_ptr().cast(),
                name.len() as isize,
                &mut key,
            )
        })?;
        // SAFETY: live env; `object`, `key` and `value` are handles of this call.
        ok(unsafe { sys::napi_set_property(self.env, object.raw, key, value.raw) })
    }

    pub fn array_with_length(self, len: usize) -> R<Value<'s>> {
        let mut v = ptr::null_mut();
        // SAFETY: live env; `v` is a valid out-pointer.
        ok(unsafe { sys::napi_create_array_with_length(self.env, len, &mut v) })?;
        Ok(Value::new(v))
    }

    /// `array[i] = value`.
    pub fn set_element(self, array: Value<'s>, i: u32, value: Value<'s>) -> R<()> {
        // SAFETY: live env; `array` and `value` are handles of this call.
        ok(unsafe { sys::napi_set_element(self.env, array.raw, i, value.raw) })
    }

    /// Makes what Rust wrote into the memory of `view` (an `ArrayBuffer` or typed array of this call, its first
    /// `bytes` bytes) visible to JavaScript. Natively that memory *is* the JavaScript buffer and this does
    /// nothing. Under WebAssembly (emnapi) the data pointer N-API hands out is a mirror in the module's linear
    /// memory, filled from JavaScript when it is handed out and copied back only by `emnapi_sync_memory`.
    /// `buffer` is the `ArrayBuffer` itself (not a view: emnapi's check for a view costs a thrown and caught
    /// exception), `byte_offset` where the written bytes start in it.
    #[cfg(not(target_family = "wasm"))]
    #[inline(always)]
    pub fn publish_writes(self, _buffer: Value<'s>, _byte_offset: usize, _bytes: usize) -> R<()> {
        Ok(())
    }

    /// See the native variant: copies the mirror of `bytes` bytes at `byte_offset` back to JavaScript.
    #[cfg(target_family = "wasm")]
    pub fn publish_writes(self, buffer: Value<'s>, byte_offset: usize, bytes: usize) -> R<()> {
        if bytes == 0 {
            return Ok(());
        }
        let mut raw = buffer.raw;
        // SAFETY: live env; `raw` is a handle of this call to an ArrayBuffer (checked by emnapi, which returns a
        // status otherwise) and a valid in/out-pointer for the handle it may replace.
        ok(unsafe { emnapi::emnapi_sync_memory(self.env, false, &mut raw, byte_offset, bytes) })
    }

    /// A new `Float64Array` holding a copy of `values`.
    pub fn float64_array(self, values: &[f64]) -> R<Value<'s>> {
        let bytes = std::mem::size_of_val(values);
        let mut data = ptr::null_mut::<c_void>();
        let mut buffer = ptr::null_mut();
        // SAFETY: live env; `data` and `buffer` are valid out-pointers.
        ok(unsafe { sys::napi_create_arraybuffer(self.env, bytes, &mut data, &mut buffer) })?;
        if bytes > 0 {
            // SAFETY: Node allocated `bytes` writable bytes at `data` for the new buffer, which nothing else
            // references yet; `values` is `bytes` readable bytes of a distinct Rust allocation.
            unsafe {
                ptr::copy_nonoverlapping(values.as_ptr().cast::<u8>(), data.cast::<u8>(), bytes)
            };
        }
        self.publish_writes(Value::new(buffer), 0, bytes)?;
        let mut typed = ptr::null_mut();
        // SAFETY: live env; `buffer` is the handle just created, exactly `values.len()` f64s long from offset
        // 0; `typed` is a valid out-pointer.
        ok(unsafe {
            sys::napi_create_typedarray(
                self.env,
                sys::TypedarrayType::float64_array,
                values.len(),
                buffer,
                0,
                &mut typed,
            )
        })?;
        Ok(Value::new(typed))
    }

    /// Converts a Rust value with napi-rs's own conversion (a `#[napi(object)]`, a `Vec`, a `String`).
    pub fn convert<T: ToNapiValue>(self, value: T) -> R<Value<'s>> {
        // SAFETY: the env is live on this thread (scope invariant), which is all `to_napi_value` requires.
        unsafe { T::to_napi_value(self.env, value) }
            .map(Value::new)
            .map_err(|_| Fail::Status(sys::Status::napi_generic_failure))
    }
}
