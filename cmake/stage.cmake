# Run by the build (cmake -P) after cargo: lays the artifacts out as they are installed, in
# STAGE/lib and STAGE/include, the build tree's usable copy.
#
#   -DCARGO_OUT=dir   where cargo wrote libprov_mqtt_transport.{so,a}
#   -DSTAGE=dir -DREALNAME=libprov_mqtt_transport.so.X.Y.Z -DHEADER=path
#   -DOBJDUMP= -DOBJCOPY= -DSTRIP=   the toolchain's binutils (CMake found them for the target)
#   -DDO_STRIP=ON|OFF
#
# The SONAME is read from the library (build.rs sets it), so it is written down in one place.
# Stripping keeps the debug info in lib/.debug/<name>.debug, with a .gnu_debuglink in the
# library, where gdb looks without being told.
foreach(v CARGO_OUT STAGE REALNAME HEADER OBJDUMP)
    if(NOT ${v})
        message(FATAL_ERROR "stage.cmake: -D${v}= is required")
    endif()
endforeach()
set(lib "${STAGE}/lib")
file(REMOVE_RECURSE "${lib}")
file(MAKE_DIRECTORY "${lib}" "${STAGE}/include")
file(COPY_FILE "${CARGO_OUT}/libprov_mqtt_transport.so" "${lib}/${REALNAME}")
file(COPY_FILE "${CARGO_OUT}/libprov_mqtt_transport.a" "${lib}/libprov_mqtt_transport.a")
file(COPY_FILE "${HEADER}" "${STAGE}/include/prov_mqtt_transport.h")

execute_process(COMMAND "${OBJDUMP}" -p "${lib}/${REALNAME}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
string(REGEX MATCH "SONAME +([^\n ]+)" _ "${dyn}")
set(soname "${CMAKE_MATCH_1}")
if(NOT rc EQUAL 0 OR NOT soname MATCHES "^libprov_mqtt_transport\\.so\\.[0-9]+$")
    message(FATAL_ERROR "stage.cmake: ${lib}/${REALNAME} has no SONAME libprov_mqtt_transport.so.N (got '${soname}')")
endif()
file(CREATE_LINK "${REALNAME}" "${lib}/${soname}" SYMBOLIC)
file(CREATE_LINK "${soname}" "${lib}/libprov_mqtt_transport.so" SYMBOLIC)

if(DO_STRIP)
    if(NOT OBJCOPY OR NOT STRIP)
        message(FATAL_ERROR "stage.cmake: stripping needs objcopy and strip (CMAKE_OBJCOPY, CMAKE_STRIP), or -DPMT_STRIP=OFF")
    endif()
    file(MAKE_DIRECTORY "${lib}/.debug")
    foreach(name "${REALNAME}" libprov_mqtt_transport.a)
        set(debug "${lib}/.debug/${name}.debug")
        execute_process(COMMAND "${OBJCOPY}" --only-keep-debug "${lib}/${name}" "${debug}" COMMAND_ERROR_IS_FATAL ANY)
        if(name MATCHES "\\.a$")
            # an archive keeps its symbols: the application's link needs them
            execute_process(COMMAND "${STRIP}" --strip-debug "${lib}/${name}" COMMAND_ERROR_IS_FATAL ANY)
        else()
            execute_process(COMMAND "${STRIP}" --strip-unneeded "${lib}/${name}" COMMAND_ERROR_IS_FATAL ANY)
            execute_process(COMMAND "${OBJCOPY}" --add-gnu-debuglink=${debug} "${lib}/${name}"
                            WORKING_DIRECTORY "${lib}/.debug" COMMAND_ERROR_IS_FATAL ANY)
        endif()
    endforeach()
endif()
