# A toolchain file as a board's SDK writes one, naming the host's own target explicitly: it drives
# the package's cross-build path (PMT_RUST_TARGET derived from CMAKE_C_COMPILER_TARGET, cargo
# --target, the toolchain's compiler as linker, the sysroot) where only the host's Rust target is
# installed. scripts/cross-check.sh uses it with PMT_CC set to a compiler wrapper that logs its
# calls; a real one names e.g. aarch64-linux-gnu-gcc and the board's sysroot.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
if(DEFINED ENV{PMT_CC})
    set(CMAKE_C_COMPILER "$ENV{PMT_CC}")
else()
    set(CMAKE_C_COMPILER x86_64-linux-gnu-gcc)
endif()
set(CMAKE_C_COMPILER_TARGET x86_64-linux-gnu)
set(CMAKE_SYSROOT /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
