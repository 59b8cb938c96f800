//! SMTP wire format (RFC 5321 and its extensions): commands, replies, strict line discipline,
//! DATA dot-unstuffing and dot-stuffing. Pure: no I/O, no clocks, no allocation beyond what a
//! caller's input needs, so every function here can be fuzzed and table-tested.
