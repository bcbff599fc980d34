//! The std platform for hosts.
