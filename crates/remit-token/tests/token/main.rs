//! remit-token's integration tests: the JWT attack suite (cases in `cases/jwt_attacks.toml`),
//! key sets, issuance, token exchange and single-use claims.

mod support;

mod attacks;

mod exchange;
mod keysets;
mod properties;
