# Turns an OpenCL C source file into a C header holding it as a NUL-terminated byte array, so
# the plugin needs no source tree at run time. C has no raw strings; bytes need no escaping.
# cmake -DSOURCE=cl/cnnelm.cl -DHEADER=out.h -DNAME=cnnelm_cl_source -P embed.cmake
file(READ "${SOURCE}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n  " bytes "${bytes}")
file(WRITE "${HEADER}" "/* generated from ${SOURCE} by embed.cmake: do not edit */\n"
  "static const char ${NAME}[] = {\n  ${bytes}0x00\n};\n")
