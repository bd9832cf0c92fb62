//! Examples of flowc.
