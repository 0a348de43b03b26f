//! dps-emulator: placeholder.
