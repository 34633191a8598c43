//! `kassa-tools`: `kassactl`, the operator CLI. It talks to nodes only through the wire client.
//!
//! Empty until the client protocol is built.
