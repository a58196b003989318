//! Synap for WebAssembly: `#[wasm_bindgen]` wrappers of the core's `Engine` and `Simulation`,
//! built into the npm package `synap-wasm` by `host-wasm/build.sh` (with the TypeScript client
//! beside them). Start at [`WasmEngine`] (`Engine` in JavaScript) and [`WasmSimulation`]
//! (`Simulation`); docs/simulator.md and docs/clients.md show them from JavaScript.
//!
//! These wrappers only convert and forward. Commands, replies, events, scenarios and reports
//! cross as plain JSON-compatible objects in the core's serde vocabulary (written with
//! `Serializer::json_compatible()`: objects, not `Map`s; `null`, not `undefined`). Errors are
//! thrown as the serialized core `Error` (an object with a `code`) plus a readable `message`.
//! 64-bit parameters arrive as JS numbers (`f64`) and are checked before conversion, because a
//! bare `u64` parameter would demand a `BigInt` from every caller.

mod fast;

use serde::Serialize;
use serde::de::DeserializeOwned;
use synap_core::sim::{self, Scenario, parse_seed};
use synap_core::{Command, EngineConfig, Error, Millis};
use wasm_bindgen::prelude::*;

/// Largest integer a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen(start)]
fn start() {
    // Panics (broken invariants) show their message in the JS console instead of "unreachable".
    console_error_panic_hook::set_once();
}

/// Writes a value as a plain JSON-compatible JS value.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| invalid("value", &e.to_string()))
}

/// Reads a JS value into a core type; a shape error becomes an `invalid_argument` error.
///
/// The value goes through `serde_json::Value` first: serde-wasm-bindgen reads only the fields a
/// struct declares, so `deny_unknown_fields` would silently pass a misspelt scenario field that
/// the native CLI refuses. Via JSON both hosts accept exactly the same documents.
fn from_js<T: DeserializeOwned>(what: &str, value: JsValue) -> Result<T, JsValue> {
    let json: serde_json::Value =
        serde_wasm_bindgen::from_value(value).map_err(|e| invalid(what, &e.to_string()))?;
    serde_json::from_value(json).map_err(|e| invalid(what, &e.to_string()))
}

/// The core error as a JS object: its serde form (with `code`) plus `message`.
fn error_to_js(error: &Error) -> JsValue {
    let mut value = serde_json::to_value(error).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("message".into(), error.to_string().into());
    }
    to_js(&value).unwrap_or_else(|e| e)
}

fn invalid(field: &str, reason: &str) -> JsValue {
    error_to_js(&Error::InvalidArgument {
        field: field.to_owned(),
        reason: reason.to_owned(),
    })
}

/// A time or duration in milliseconds: a finite, non-negative integer up to 2^53 - 1.
fn millis(field: &str, ms: f64) -> Result<u64, JsValue> {
    if (0.0..=MAX_SAFE).contains(&ms) && ms.fract() == 0.0 {
        Ok(ms as u64)
    } else {
        Err(invalid(
            field,
            "must be a whole number of milliseconds in 0..=2^53-1",
        ))
    }
}

/// A seed: a number (a whole number up to 2^53 - 1) or a string of decimal digits (any u64).
fn seed(value: &JsValue) -> Result<u64, JsValue> {
    if let Some(n) = value.as_f64() {
        return millis("seed", n).map_err(|_| invalid("seed", "a numeric seed must be a whole number in 0..=2^53-1; pass larger seeds as a string of digits"));
    }
    if let Some(s) = value.as_string() {
        return parse_seed(&s).map_err(|e| invalid("seed", &e));
    }
    if value.is_undefined() || value.is_null() {
        return Ok(0);
    }
    Err(invalid("seed", "must be a number or a string of digits"))
}

/// `Simulation.replay`'s options. `seed` may be a number or, like every seed of this API, a
/// string of digits: a server's engine seed is a full u64, which a JS number cannot hold.
fn replay_options(options: JsValue) -> Result<sim::ReplayOptions, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(sim::ReplayOptions::default());
    }
    let mut json: serde_json::Value =
        serde_wasm_bindgen::from_value(options).map_err(|e| invalid("options", &e.to_string()))?;
    if let Some(text) = json.get("seed").and_then(serde_json::Value::as_str) {
        let n = parse_seed(text).map_err(|e| invalid("seed", &e))?;
        json["seed"] = n.into();
    }
    serde_json::from_value(json).map_err(|e| invalid("options", &e.to_string()))
}

/// The sans-IO engine. Call `handle(nowMs, command)` for every input, `handleTimeout(nowMs)` at
/// (or after) `pollTimeout()`, and `drainEvents()` after each of the two.
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    inner: synap_core::Engine,
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// `new Engine(config?, seed?)`: `config` is an engine config object (defaults when
    /// `null`/`undefined`), `seed` a number or a string of digits (0 when absent).
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue, seed_value: JsValue) -> Result<Self, JsValue> {
        let config: EngineConfig = if config.is_undefined() || config.is_null() {
            EngineConfig::default()
        } else {
            from_js("config", config)?
        };
        Ok(Self {
            inner: synap_core::Engine::new(config, seed(&seed_value)?),
        })
    }

    /// Applies one command at `nowMs`; returns the reply or throws the error object.
    pub fn handle(&mut self, now_ms: f64, command: JsValue) -> Result<JsValue, JsValue> {
        let now = millis("now", now_ms)?;
        let command: Command = from_js("command", command)?;
        match self.inner.handle(Millis(now), command) {
            Ok(reply) => to_js(&reply),
            Err(e) => Err(error_to_js(&e)),
        }
    }

    /// Runs the timers due at `nowMs`.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) -> Result<(), JsValue> {
        self.inner.handle_timeout(Millis(millis("now", now_ms)?));
        Ok(())
    }

    /// The earliest pending deadline in milliseconds, or `null` when nothing is scheduled.
    #[wasm_bindgen(js_name = pollTimeout, unchecked_return_type = "number | null")]
    pub fn poll_timeout(&self) -> JsValue {
        match self.inner.poll_timeout() {
            Some(m) => JsValue::from_f64(m.0 as f64),
            None => JsValue::NULL,
        }
    }

    /// Every pending event, oldest first (an array, possibly empty).
    #[wasm_bindgen(js_name = drainEvents)]
    pub fn drain_events(&mut self) -> Result<JsValue, JsValue> {
        let mut events = Vec::new();
        while let Some(e) = self.inner.poll_event() {
            events.push(e);
        }
        to_js(&events)
    }
}

/// A workload simulation (see the core's `sim` module and docs/simulator.md).
#[wasm_bindgen(js_name = Simulation)]
pub struct WasmSimulation {
    inner: sim::Simulation,
}

fn scenario_error(e: &sim::ScenarioError) -> JsValue {
    invalid("scenario", &e.0)
}

#[wasm_bindgen(js_class = Simulation)]
impl WasmSimulation {
    /// `new Simulation(scenario)`: validates the scenario object; throws an error object with
    /// `code: "invalid_argument"` naming the bad field.
    #[wasm_bindgen(constructor)]
    pub fn new(scenario: JsValue) -> Result<Self, JsValue> {
        let scenario: Scenario = from_js("scenario", scenario)?;
        let inner = sim::Simulation::new(scenario).map_err(|e| scenario_error(&e))?;
        Ok(Self { inner })
    }

    /// `Simulation.fromPreset(name)`.
    #[wasm_bindgen(js_name = fromPreset)]
    pub fn from_preset(name: &str) -> Result<Self, JsValue> {
        let inner = sim::Simulation::from_preset(name).map_err(|e| scenario_error(&e))?;
        Ok(Self { inner })
    }

    /// `Simulation.presets()`: `[{name, description}]`.
    pub fn presets() -> Result<JsValue, JsValue> {
        to_js(&sim::presets())
    }

    /// `Simulation.presetScenario(name)`: the preset's scenario object, to edit and pass to
    /// `new Simulation`.
    #[wasm_bindgen(js_name = presetScenario)]
    pub fn preset_scenario(name: &str) -> Result<JsValue, JsValue> {
        to_js(&sim::preset(name).map_err(|e| invalid("preset", &e))?)
    }

    /// The scenario being simulated.
    pub fn scenario(&self) -> Result<JsValue, JsValue> {
        to_js(self.inner.scenario())
    }

    /// Simulates to the end; returns the final report.
    pub fn run(&mut self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.run())
    }

    /// Simulates up to virtual time `untilMs`; returns the report so far.
    pub fn step(&mut self, until_ms: f64) -> Result<JsValue, JsValue> {
        let until = millis("untilMs", until_ms)?;
        to_js(&self.inner.step(until))
    }

    /// `Simulation.replay(jsonLines, options?)`: replays a recorded command log
    /// (`{"at": ms, "command": {...}}` per line, or a server's `data export`) and returns its
    /// report. `options.seed` may be a string of digits.
    pub fn replay(log: &str, options: JsValue) -> Result<JsValue, JsValue> {
        let options = replay_options(options)?;
        let records = sim::parse_log(log).map_err(|e| invalid("log", &e))?;
        let report = sim::replay(&records, &options).map_err(|e| invalid("log", &e))?;
        to_js(&report)
    }
}
