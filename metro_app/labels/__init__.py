"""Labels: the settling rule (`settle`: which label an image has) and label quality (`quality`:
labellers' agreement, conflicts, Camera Error shares). The store's label tables are in
`metro_app.store.labels`.
"""
