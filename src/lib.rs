//! prov_mqtt_transport: placeholder while the workspace is laid out.
#![deny(unsafe_code)]
