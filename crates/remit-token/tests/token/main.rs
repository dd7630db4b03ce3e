//! remit-token's integration tests: the JWT attack suite (cases in `cases/jwt_attacks.toml`),
//! key sets, issuance, token exchange, single-use claims and JWT-SVIDs.

mod support;

mod attacks;

mod exchange;
mod keysets;
mod properties;
mod svid;
