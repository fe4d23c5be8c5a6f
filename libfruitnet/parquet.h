/* parquet.h — Parquet constants shared by the writer and the reader (private). */
#ifndef FRUITNET_PARQUET_H
#define FRUITNET_PARQUET_H

/* physical types */
enum { PQ_BOOLEAN = 0, PQ_INT32 = 1, PQ_INT64 = 2, PQ_INT96 = 3, PQ_FLOAT = 4, PQ_DOUBLE = 5, PQ_BYTE_ARRAY = 6,
       PQ_FIXED_LEN_BYTE_ARRAY = 7 };
/* repetition */
enum { PQ_REQUIRED = 0, PQ_OPTIONAL = 1, PQ_REPEATED = 2 };
/* converted types */
enum { PQ_CT_UTF8 = 0, PQ_CT_LIST = 3 };
/* encodings */
enum { PQ_ENC_PLAIN = 0, PQ_ENC_PLAIN_DICTIONARY = 2, PQ_ENC_RLE = 3, PQ_ENC_BIT_PACKED = 4, PQ_ENC_RLE_DICTIONARY = 8 };
/* page types */
enum { PQ_DATA_PAGE = 0, PQ_INDEX_PAGE = 1, PQ_DICTIONARY_PAGE = 2, PQ_DATA_PAGE_V2 = 3 };
/* codecs */
enum { PQ_UNCOMPRESSED = 0, PQ_SNAPPY = 1, PQ_GZIP = 2, PQ_LZO = 3, PQ_BROTLI = 4, PQ_LZ4 = 5, PQ_ZSTD = 6,
       PQ_LZ4_RAW = 7 };

#define PQ_MAX_PAGE_BYTES ((size_t)1 << 30)

#endif
