/* placeholder: implemented by the ws work */
