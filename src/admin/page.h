/*
 * page: the web page's files (src/admin/www/), compiled into the binary by tools/embed.py, so
 * there is nothing to install and no path on disk to traverse: a URL either names one of these
 * exactly or is a 404.
 */
#ifndef PORTGATE_PAGE_H
#define PORTGATE_PAGE_H

#include <stddef.h>

struct page_asset {
    const char *path; /* "/" or "/assets/NAME" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};

/* Every asset, ending with an entry whose path is NULL (generated). */
extern const struct page_asset page_assets[];

/* The asset served at url (its path, without a query), or NULL. */
const struct page_asset *page_find(const char *url);

#endif
