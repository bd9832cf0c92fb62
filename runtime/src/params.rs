//! Parameters of compiled flows: one flat buffer, in the kernel's layout, described by a
//! table of [`Slot`]s (`layers.K.NAME`, offset, length, kind). Generated code passes its
//! table to these functions; a loader of parameter files maps tensor names to slots the
//! same way.
//!
//! ```
//! use runtime::params::{self, Kind, Slot};
//! const SLOTS: &[Slot] = &[
//!     Slot { name: "layers.0.shift", offset: 0, len: 2, kind: Kind::Real },
//!     Slot { name: "layers.0.scale", offset: 2, len: 2, kind: Kind::Positive },
//! ];
//! let mut flat = [0.0f64; 4];
//! params::set_defaults(SLOTS, &mut flat);
//! assert_eq!(flat, [0.0, 0.0, 1.0, 1.0]);
//! params::set(SLOTS, &mut flat, "layers.0.shift", &[0.5, -0.5]).unwrap();
//! let err = params::set(SLOTS, &mut flat, "layers.0.scale", &[1.0, -2.0]).unwrap_err();
//! assert_eq!(err.to_string(), "`layers.0.scale`[1] = -2 is outside (0, inf), the range of a `positive` parameter");
//! ```

use crate::real::Real;
use std::fmt;

/// How a parameter is constrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Any finite number.
    Real,
    /// In (0, inf).
    Positive,
    /// In (0, 1).
    Unit,
}

impl Kind {
    /// Whether `v` is a valid value.
    pub fn contains(self, v: f64) -> bool {
        match self {
            Kind::Real => v.is_finite(),
            Kind::Positive => v > 0.0 && v.is_finite(),
            Kind::Unit => v > 0.0 && v < 1.0,
        }
    }
    /// The identity-like value an unset parameter takes (real 0, positive 1, unit 0.5).
    pub fn default_value(self) -> f64 {
        match self {
            Kind::Real => 0.0,
            Kind::Positive => 1.0,
            Kind::Unit => 0.5,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Real => "real",
            Kind::Positive => "positive",
            Kind::Unit => "unit",
        }
    }
    fn range(self) -> &'static str {
        match self {
            Kind::Real => "the finite numbers",
            Kind::Positive => "(0, inf)",
            Kind::Unit => "(0, 1)",
        }
    }
}

/// One parameter vector: `values[offset..offset + len]` of the flat buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// `layers.K.NAME`.
    pub name: &'static str,
    pub offset: usize,
    pub len: usize,
    pub kind: Kind,
}

/// A parameter buffer or setting that does not fit the flow.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamError {
    /// The flat buffer has the wrong length.
    Length { expected: usize, got: usize },
    /// No parameter has this name.
    Unknown { name: String, known: Vec<&'static str> },
    /// A parameter was not given.
    Missing { name: &'static str },
    /// A parameter was given twice.
    Duplicate { name: String },
    /// A parameter vector has the wrong length.
    Shape { name: &'static str, expected: usize, got: usize },
    /// A value is outside its kind's range.
    Domain { name: &'static str, index: usize, value: f64, kind: Kind },
    /// A parameter file could not be read.
    File { message: String },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Length { expected, got } => write!(f, "the flow takes {expected} parameter values, got {got}"),
            ParamError::Unknown { name, known } if known.is_empty() => write!(f, "unknown parameter `{name}`: the flow has no parameters"),
            ParamError::Unknown { name, known } => write!(f, "unknown parameter `{name}`; the parameters are: {}", known.join(", ")),
            ParamError::Missing { name } => write!(f, "parameter `{name}` is not given"),
            ParamError::Duplicate { name } => write!(f, "parameter `{name}` is given twice"),
            ParamError::Shape { name, expected, got } => write!(f, "parameter `{name}` has {expected} values, got {got}"),
            ParamError::File { message } => write!(f, "{message}"),
            ParamError::Domain { name, index, value, kind } => {
                write!(f, "`{name}`[{index}] = {value} is outside {}, the range of a `{}` parameter", kind.range(), kind.name())
            }
        }
    }
}

impl std::error::Error for ParamError {}

fn slot<'a>(slots: &'a [Slot], name: &str) -> Result<&'a Slot, ParamError> {
    slots
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ParamError::Unknown { name: name.to_string(), known: slots.iter().map(|s| s.name).collect() })
}

fn check_values<T: Real>(s: &Slot, values: &[T]) -> Result<(), ParamError> {
    if values.len() != s.len {
        return Err(ParamError::Shape { name: s.name, expected: s.len, got: values.len() });
    }
    match values.iter().position(|v| !s.kind.contains(v.to_f64())) {
        Some(index) => Err(ParamError::Domain { name: s.name, index, value: values[index].to_f64(), kind: s.kind }),
        None => Ok(()),
    }
}

/// Checks a whole flat buffer: its length and every value's range.
pub fn check<T: Real>(slots: &[Slot], flat: &[T]) -> Result<(), ParamError> {
    let expected: usize = slots.iter().map(|s| s.len).sum();
    if flat.len() != expected {
        return Err(ParamError::Length { expected, got: flat.len() });
    }
    slots.iter().try_for_each(|s| check_values(s, &flat[s.offset..s.offset + s.len]))
}

/// Sets every parameter to its kind's identity-like default.
pub fn set_defaults<T: Real>(slots: &[Slot], flat: &mut [T]) {
    for s in slots {
        flat[s.offset..s.offset + s.len].fill(T::from_f64(s.kind.default_value()));
    }
}

/// Sets one parameter vector by name, after checking it.
pub fn set<T: Real>(slots: &[Slot], flat: &mut [T], name: &str, values: &[T]) -> Result<(), ParamError> {
    let s = slot(slots, name)?;
    check_values(s, values)?;
    flat[s.offset..s.offset + s.len].copy_from_slice(values);
    Ok(())
}

/// One parameter vector by name.
pub fn get<'a, T>(slots: &[Slot], flat: &'a [T], name: &str) -> Option<&'a [T]> {
    let s = slots.iter().find(|s| s.name == name)?;
    flat.get(s.offset..s.offset + s.len)
}

/// Fills the flat buffer from `(name, values)` pairs: every parameter exactly once.
pub fn from_named<T: Real>(slots: &[Slot], flat: &mut [T], named: &[(&str, &[T])]) -> Result<(), ParamError> {
    for (i, (name, values)) in named.iter().enumerate() {
        if named[..i].iter().any(|(n, _)| n == name) {
            return Err(ParamError::Duplicate { name: name.to_string() });
        }
        set(slots, flat, name, values)?;
    }
    match slots.iter().find(|s| !named.iter().any(|(n, _)| *n == s.name)) {
        Some(s) => Err(ParamError::Missing { name: s.name }),
        None => Ok(()),
    }
}

/// Fills the flat buffer from a safetensors file (the names `flowc params` lists, any float
/// dtype): every parameter exactly once, no other tensors, values in range.
pub fn from_file<T: Real>(slots: &[Slot], flat: &mut [T], path: &std::path::Path) -> Result<(), ParamError> {
    let tensors = crate::param_file::read(path).map_err(|message| ParamError::File { message })?;
    let owned: Vec<(String, Vec<T>)> = tensors.into_iter().map(|(n, t)| (n, t.data.into_iter().map(T::from_f64).collect())).collect();
    let named: Vec<(&str, &[T])> = owned.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    from_named(slots, flat, &named).map_err(|e| match e {
        ParamError::File { .. } => e,
        other => ParamError::File { message: format!("`{}`: {other}", path.display()) },
    })
}
