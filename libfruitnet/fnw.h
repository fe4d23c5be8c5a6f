/* fnw.h — constants of the .fnw weight file format (private). */
#ifndef FRUITNET_FNW_H
#define FRUITNET_FNW_H
#define FNW_MAGIC "FNWEIGHT"
#define FNW_VERSION 1
#define FNW_HEADER_SIZE 64
#define FNW_MAX_TENSORS 65536
#endif
