/*
 * parquet_thrift.h — the Thrift field ids of the Parquet metadata structs
 * that fruitnet reads and writes (private; shared by parquet_read.c and
 * parquet_write.c). They are the numbers of parquet.thrift in
 * apache/parquet-format (src/main/thrift/parquet.thrift): each enum below is
 * one struct there, each constant one of its fields, named
 * PQ_<STRUCT>_<FIELD>. Only fields fruitnet uses are listed; the reader
 * skips every other field.
 */
#ifndef FRUITNET_PARQUET_THRIFT_H
#define FRUITNET_PARQUET_THRIFT_H

/* struct FileMetaData (the footer) */
enum {
    PQ_FILEMETADATA_VERSION = 1,
    PQ_FILEMETADATA_SCHEMA = 2,             /* list<SchemaElement> */
    PQ_FILEMETADATA_NUM_ROWS = 3,
    PQ_FILEMETADATA_ROW_GROUPS = 4,         /* list<RowGroup> */
    PQ_FILEMETADATA_KEY_VALUE_METADATA = 5, /* list<KeyValue> */
    PQ_FILEMETADATA_CREATED_BY = 6,
    PQ_FILEMETADATA_COLUMN_ORDERS = 7 /* list<ColumnOrder> */
};

/* struct SchemaElement */
enum {
    PQ_SCHEMAELEMENT_TYPE = 1,
    PQ_SCHEMAELEMENT_REPETITION_TYPE = 3,
    PQ_SCHEMAELEMENT_NAME = 4,
    PQ_SCHEMAELEMENT_NUM_CHILDREN = 5,
    PQ_SCHEMAELEMENT_CONVERTED_TYPE = 6,
    PQ_SCHEMAELEMENT_LOGICALTYPE = 10 /* union LogicalType */
};

/* union LogicalType (each member an empty struct here) */
enum { PQ_LOGICALTYPE_STRING = 1, PQ_LOGICALTYPE_LIST = 3 };

/* struct KeyValue */
enum { PQ_KEYVALUE_KEY = 1, PQ_KEYVALUE_VALUE = 2 };

/* struct RowGroup */
enum {
    PQ_ROWGROUP_COLUMNS = 1, /* list<ColumnChunk> */
    PQ_ROWGROUP_TOTAL_BYTE_SIZE = 2,
    PQ_ROWGROUP_NUM_ROWS = 3,
    PQ_ROWGROUP_FILE_OFFSET = 5,
    PQ_ROWGROUP_TOTAL_COMPRESSED_SIZE = 6,
    PQ_ROWGROUP_ORDINAL = 7 /* i16 */
};

/* struct ColumnChunk */
enum {
    PQ_COLUMNCHUNK_FILE_PATH = 1, /* column data in another file: refused */
    PQ_COLUMNCHUNK_FILE_OFFSET = 2,
    PQ_COLUMNCHUNK_META_DATA = 3 /* ColumnMetaData */
};

/* struct ColumnMetaData */
enum {
    PQ_COLUMNMETADATA_TYPE = 1,
    PQ_COLUMNMETADATA_ENCODINGS = 2,     /* list<Encoding> */
    PQ_COLUMNMETADATA_PATH_IN_SCHEMA = 3, /* list<string> */
    PQ_COLUMNMETADATA_CODEC = 4,
    PQ_COLUMNMETADATA_NUM_VALUES = 5,
    PQ_COLUMNMETADATA_TOTAL_UNCOMPRESSED_SIZE = 6,
    PQ_COLUMNMETADATA_TOTAL_COMPRESSED_SIZE = 7,
    PQ_COLUMNMETADATA_DATA_PAGE_OFFSET = 9,
    PQ_COLUMNMETADATA_DICTIONARY_PAGE_OFFSET = 11,
    PQ_COLUMNMETADATA_STATISTICS = 12 /* Statistics */
};

/* struct Statistics */
enum { PQ_STATISTICS_NULL_COUNT = 3, PQ_STATISTICS_MAX_VALUE = 5, PQ_STATISTICS_MIN_VALUE = 6 };

/* union ColumnOrder */
enum { PQ_COLUMNORDER_TYPE_ORDER = 1 /* empty struct TypeDefinedOrder */ };

/* struct PageHeader */
enum {
    PQ_PAGEHEADER_TYPE = 1,
    PQ_PAGEHEADER_UNCOMPRESSED_PAGE_SIZE = 2,
    PQ_PAGEHEADER_COMPRESSED_PAGE_SIZE = 3,
    PQ_PAGEHEADER_CRC = 4,
    PQ_PAGEHEADER_DATA_PAGE_HEADER = 5,   /* DataPageHeader */
    PQ_PAGEHEADER_DATA_PAGE_HEADER_V2 = 8 /* DataPageHeaderV2 */
};

/* struct DataPageHeader */
enum {
    PQ_DATAPAGEHEADER_NUM_VALUES = 1,
    PQ_DATAPAGEHEADER_ENCODING = 2,
    PQ_DATAPAGEHEADER_DEFINITION_LEVEL_ENCODING = 3,
    PQ_DATAPAGEHEADER_REPETITION_LEVEL_ENCODING = 4
};

/* struct DataPageHeaderV2 */
enum {
    PQ_DATAPAGEHEADERV2_NUM_VALUES = 1,
    PQ_DATAPAGEHEADERV2_ENCODING = 4,
    PQ_DATAPAGEHEADERV2_DEFINITION_LEVELS_BYTE_LENGTH = 5,
    PQ_DATAPAGEHEADERV2_REPETITION_LEVELS_BYTE_LENGTH = 6,
    PQ_DATAPAGEHEADERV2_IS_COMPRESSED = 7
};

#endif
