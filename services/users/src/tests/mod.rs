//! The users service's tests against real storage, in the library's own test binary (one binary
//! a service: it links once).

mod users;
